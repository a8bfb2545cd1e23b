"""`python -m minidit plan`: the stage table, the FLOP floor on a named card, and the settings that fit.

    python -m minidit plan --model pixart-sigma-2k --height 4096 --width 4096 --gpu-memory 24 --gpu a100

The settings searched, each a way to trade time (or exactness) for memory:
  dtype      bf16 / fp16 / fp32 for the denoiser (T5 in bf16, never unguarded fp16; the SD/SDXL VAEs in fp32)
  text       "resident": the text encoders stay on the card with everything else;
             "staged": loaded for the text stage and freed before denoising (`pipelines.common.Staged`);
             "cpu": run on the CPU, only the embeddings move to the card (slow: ~3 TFLOP at CPU speed)
  decode     untiled, or tiles of 128 / 96 / 64 / 32 latent pixels (1024 ... 256 px), overlap a quarter
  windows    none, or sliding windows of the training size, then smaller (overlap a quarter): these change
             the image (each window sees only its part), so they are used only when nothing exact fits

During every stage the denoiser and the VAE stay on the card (as the pipelines keep them); the peak of a
stage is that plus the stage's own weights (the text encoders, unless resident anyway or on the CPU)
and its activations. A setting fits when every stage's peak is at most the card's memory. The cheapest
setting that fits wins: exact settings before windows (and the largest windows that
fit before smaller ones), then the least moving of the text encoders
(staging reloads them for every prompt, the CPU runs them at CPU speed), then the lowest FLOP floor
(FLOPs / the card's dense peak: fp32 matmuls at the fp32 peak, fp32 convolutions at TF32, tiled
decodes and windows counting their overlap).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from . import plan as P
from . import plan_models as M
from .errors import InputError
from .flops import card


def _bf16(name: str) -> float:
    """A card's dense bf16 tensor-core peak, FLOP/s (the data-sheet table, `flops.CARDS`)."""
    return card(name).dense * 1e12


# Dense peak throughput, FLOP/s: bf16/fp16 tensor cores, fp32 without TF32 (PyTorch's default for matmuls),
# TF32 (its default for convolutions: an fp32 VAE decode runs at this rate), and the card's memory in GiB.
GPUS = {
    "a100": ("NVIDIA A100", _bf16("A100"), 19.5e12, 156e12, 80),
    "h100": ("NVIDIA H100 SXM", _bf16("H100 SXM"), 67e12, 495e12, 80),
    "h200": ("NVIDIA H200", _bf16("H200"), 67e12, 495e12, 141),
    "4090": ("NVIDIA RTX 4090", _bf16("RTX 4090"), 82.6e12, 82.6e12, 24),
}


def speed(gpu: str, dtype: str, convolutions: bool = False) -> float:
    """The dense peak FLOP/s for work in `dtype` (convolutions in fp32 use TF32)."""
    _, half, fp32, tf32, _ = GPUS[gpu]
    if dtype != "fp32":
        return half
    return tf32 if convolutions else fp32
DTYPES = ("bf16", "fp16", "fp32")
TEXT = ("resident", "staged", "cpu")
TILES = (None, 128, 96, 64, 32)


@dataclass(frozen=True)
class Setting:
    dtype: str
    text: str
    tile: int | None
    window: int | None

    def describe(self) -> str:
        tile = "untiled decode" if self.tile is None else f"decode in {self.tile * 8}-px tiles (overlap {self.tile * 2} px)"
        window = "no windows" if self.window is None else f"{self.window * 8}-px windows (overlap {self.window * 2} px)"
        text = "no text encoder" if self.text == "none" else f"text encoders {self.text}"
        return f"{self.dtype}, {text}, {tile}, {window}"


@dataclass
class Outcome:
    setting: Setting
    peaks: dict           # stage -> bytes on the card
    seconds: float        # the FLOP floor of the card's part of the run
    stages: dict          # stage -> Estimate

    @property
    def worst(self) -> tuple[str, int]:
        return max(self.peaks.items(), key=lambda kv: kv[1])


def evaluate(stack, h, w, setting: Setting, *, steps, guided, backend, kv_scale, gpu) -> Outcome:
    """The card's peak per stage and the FLOP floor of one run with `setting`."""
    text = M.text_stage(stack, setting.dtype, guided)
    den = M.denoise_stage(stack, h, w, setting.dtype, steps, guided, backend,
                          setting.window, (setting.window or 0) // 4, kv_scale)
    dec = M.decode_stage(stack, h, w, setting.dtype, setting.tile, (setting.tile or 0) // 4)
    resident = den.weights + dec.weights + (text.weights if setting.text == "resident" else 0)
    on_card = setting.text != "cpu"           # (on the CPU only the embeddings come to the card: ~MBs)
    text_peak = {"none": 0, "resident": text.activations, "staged": text.terms["staged peak"], "cpu": 0}[setting.text]
    peaks = {"text": resident + text_peak,
             "denoise": resident + den.activations, "decode": resident + dec.activations}
    seconds = ((text.flops / speed(gpu, text.dtype) if on_card else 0.0) + den.flops / speed(gpu, den.dtype)
               + dec.flops / speed(gpu, dec.dtype, convolutions=True))
    if not stack.text:
        del peaks["text"]
    return Outcome(setting, peaks, seconds, {"text": text, "denoise": den, "decode": dec})


def candidate_windows(stack, h, w) -> list:
    """No windows; then windows of the training latent size and of halves of it, smaller than the latent."""
    first = stack.side // stack.vae.downsample_factor
    sizes = [s for s in (first, first // 2, first // 4) if s < max(h, w) and s >= 32]
    return [None] + sizes


def search(stack, h, w, memory_gib: float, *, dtype=None, steps=20, guided=True, backend="sdpa", kv_scale=1,
           gpu="a100", window=None) -> tuple[Outcome | None, list[Outcome]]:
    """(the cheapest setting that fits, every setting evaluated). `dtype`/`window` given = fixed."""
    limit = memory_gib * P.GiB
    if window is not None and window >= max(h, w):
        window = None                                     # one window covering the image: no windows
    # exact first; else the largest windows (the most context per window); then the least text staging, then speed
    texts = TEXT if stack.text else ("none",)
    rank = lambda o: (o.setting.window is not None, -(o.setting.window or 0), texts.index(o.setting.text),  # noqa: E731
                      round(o.seconds, 3), DTYPES.index(o.setting.dtype))

    def tried(windows):
        return [evaluate(stack, h, w, Setting(d, t, tile, win), steps=steps, guided=guided, backend=backend,
                         kv_scale=kv_scale, gpu=gpu)
                for d, t, tile, win in itertools.product([dtype] if dtype else DTYPES, texts, TILES, windows)
                if not (tile is not None and tile >= max(h, w))]     # a tile as large as the image is untiled
    # windows change the image: tried (each needs its own FLOP count) only when nothing exact fits
    outcomes = tried([window])
    if window is None and not any(max(o.peaks.values()) <= limit for o in outcomes):
        outcomes += tried(candidate_windows(stack, h, w)[1:])
    fits = [o for o in outcomes if max(o.peaks.values()) <= limit]
    return (min(fits, key=rank) if fits else None), outcomes


# --------------------------------------------------------------------------------------------
# The printout
# --------------------------------------------------------------------------------------------

def _g(n: float) -> str:
    return f"{P.gib(n):.2f}"


def stage_table(stack, h, w, *, dtype, steps, guided, backend, kv_scale, gpu) -> str:
    """Every stage in `dtype`, the decode untiled and in 512-px tiles, with FLOPs and the floor."""
    text = M.text_stage(stack, dtype, guided)
    den = M.denoise_stage(stack, h, w, dtype, steps, guided, backend, kv_scale=kv_scale)
    manual = M.denoise_stage(stack, h, w, dtype, steps, guided, "manual", kv_scale=kv_scale) if backend == "sdpa" else None
    decs = [M.decode_stage(stack, h, w, dtype)] + ([M.decode_stage(stack, h, w, dtype, 64, 16)] if max(h, w) > 64 else [])
    rows = [("stage", "what", "weights GiB", "activations GiB", "weights + act. GiB", "TFLOP", f"floor s ({gpu})")]

    def row(e, convolutions=False):
        rows.append((e.name, e.what, _g(e.weights), _g(e.activations), _g(e.weights + e.activations),
                     f"{e.flops / 1e12:,.1f}", f"{e.flops / speed(gpu, e.dtype, convolutions):.2f}"))
    if stack.text:
        row(text)
    row(den)
    for d in decs:
        row(d, convolutions=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(r, widths))) for r in rows]
    notes = ["denoise activations: " + ", ".join(f"{k} {_g(v)}" for k, v in den.terms.items()) + " GiB"]
    if manual is not None:
        notes.append(f"with the manual attention path (materialised scores) the denoiser needs {_g(manual.activations)} GiB "
                     "of activations instead")
    for d in decs:
        notes.append(f"decode ({d.what}): " + ", ".join(f"{k} {_g(v)}" for k, v in d.terms.items()) + f" GiB {d.note}")
    return "\n".join(lines + [""] + notes)


def report(stack, height, width, memory_gib, *, dtype=None, steps=20, guided=True, backend="sdpa", kv_scale=1,
           gpu="a100", window=None) -> str:
    h, w = M.check_size(stack, height, width)
    cfg = stack.denoiser
    N = (h // cfg.patch_size) * (w // cfg.patch_size)
    card, half, fp32, tf32, _ = GPUS[gpu]
    head = (f"{stack.name} ({stack.title})\n{height}x{width}: latent {h}x{w}, {N} image tokens, "
            f"{'batch 2 (CFG)' if guided else 'batch 1 (no guidance)'}, {steps} steps, attention {backend}"
            + (f", KV compression {kv_scale}x{kv_scale} on blocks {cfg.depth // 2}-{cfg.depth - 1}" if kv_scale > 1 else "")
            + f"\nFLOP floor on the {card}: dense peaks {half / 1e12:.0f} TFLOP/s bf16/fp16, {fp32 / 1e12:.1f} fp32, "
              f"{tf32 / 1e12:.0f} TF32 (fp32 convolutions)\n")
    table = stage_table(stack, h, w, dtype=dtype or "bf16", steps=steps, guided=guided, backend=backend,
                        kv_scale=kv_scale, gpu=gpu)
    best, outcomes = search(stack, h, w, memory_gib, dtype=dtype, steps=steps, guided=guided, backend=backend,
                            kv_scale=kv_scale, gpu=gpu, window=window)
    lines = [head, table, "", f"Settings that fit in {memory_gib:g} GiB (the denoiser and the VAE stay on the card "
                                f"in every stage):"]
    if best is None:
        smallest = min(outcomes, key=lambda o: max(o.peaks.values()))
        stage, peak = smallest.worst
        lines.append(f"  none: the smallest setting tried ({smallest.setting.describe()}) still needs {_g(peak)} GiB "
                     f"in the {stage} stage")
        return "\n".join(lines)
    lines.append(f"  chosen: {best.setting.describe()}")
    lines.append("          peaks " + ", ".join(f"{k} {_g(v)}" for k, v in best.peaks.items()) +
                 f" GiB; FLOP floor {best.seconds:.1f} s" + (" (+ the text encoders at CPU speed)"
                                                              if best.setting.text == "cpu" else ""))
    lines += [f"  {line}" for line in why_not(best, outcomes, memory_gib)]
    return "\n".join(lines)


def why_not(best: Outcome, outcomes: list, memory_gib: float) -> list[str]:
    """The simpler settings one change away from the chosen one, and the stage that does not fit."""
    s, limit, out = best.setting, memory_gib * P.GiB, []
    simpler = []
    if s.window is not None:
        simpler.append(("without windows", dict(window=None)))
    if s.text in ("staged", "cpu"):
        simpler.append(("text encoders resident", dict(text="resident")))
    if s.text == "cpu":
        simpler.append(("text encoders staged", dict(text="staged")))
    if s.tile is not None:
        larger = [t for t in TILES if t is None or t > s.tile]
        for t in larger:
            simpler.append(("untiled decode" if t is None else f"{t * 8}-px tiles", dict(tile=t)))
    if s.dtype != "bf16":
        simpler.append(("bf16", dict(dtype="bf16")))
    for label, change in simpler:
        want = Setting(**{**s.__dict__, **change})
        o = next((o for o in outcomes if o.setting == want), None)
        if o is None:
            continue
        stage, peak = o.worst
        if peak > limit:
            out.append(f"why not {label}: the {stage} stage would need {_g(peak)} GiB")
        else:
            out.append(f"why not {label}: it fits ({_g(peak)} GiB) but its FLOP floor is {o.seconds:.1f} s")
    return out


def window_latent(pixels: int) -> int:
    """--window in pixels -> latent pixels (a multiple of 16: VAE 8 x patch 2)."""
    if pixels < 16 or pixels % 16:
        raise InputError(f"--window {pixels}: a window is a positive multiple of 16 pixels (VAE 8 x patch 2), e.g. 2048")
    return pixels // 8


def check_arguments(model: str, models: dict, height, width, memory_gib, steps, kv_scale) -> None:
    if model not in models:
        raise InputError(f"unknown model {model!r}: choose one of {', '.join(models)} (python -m minidit models)")
    if memory_gib is not None and not memory_gib > 0:
        raise InputError(f"--gpu-memory {memory_gib}: the card's memory in GiB must be positive, e.g. 24")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: at least 1")
    if kv_scale < 1:
        raise InputError(f"--kv-compress {kv_scale}: a downsampling factor of at least 1 (1 = off, 2 = 4x fewer keys)")
