"""PixArt-Σ at 1024², 2048² and 4096² on one CUDA GPU, against diffusers and the card's FLOP floor.

    python benchmarks/pixart_gpu_hires.py --out pixart_gpu_hires.txt        # the table (measured: benchmarks/results/)
    python benchmarks/pixart_gpu_hires.py --dtypes bfloat16 float16 --memory-limit-gib 24
    python benchmarks/pixart_gpu_hires.py --compile --channels-last-vae                   # speed options
    python benchmarks/pixart_gpu_hires.py --tiny                                           # CPU check, seconds

Prepared command for the device tool (one NVIDIA GPU; random full-size weights, bf16; rows 1024² and 2048²
direct with diffusers, 4096² direct and windowed; about 4-5 min on an H200, estimated from the FLOPs and
pixart_gpu.py's H200 figures). The device image has no diffusers: its one wheel travels (pure Python;
on Python 3.12 it needs nothing the image lacks: huggingface-hub >= 1.32, safetensors >= 0.8 are there).
Once, in the repository root here (`.whl/` is in .gitignore):

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1

then run(carry=[".whl"], timeout_s=570, command=

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site || exit; set -o pipefail; PYTHONUNBUFFERED=1 python3
    benchmarks/pixart_gpu_hires.py --out $OUT/pixart_gpu_hires.txt 2>&1 | tee $OUT/log)

If device time is left, a second run measures the speed options where they matter (~3 min: each row's
process compiles its blocks once, ~1 min): `... pixart_gpu_hires.py --sizes 1024 2048 --modes direct
--compile --sdpa-backends cudnn flash efficient --out $OUT/pixart_gpu_hires_compile.txt`; fp16 is
`--dtypes float16`. Without the wheel: `--no-diffusers` (no ratios).

The rows (`PLAN`; `--sizes`, `--modes` select): 1024² with PixArt-Sigma-XL-2-1024-MS, 2048² with the 2K
model, 4096² with the 2K model both directly (one forward of 65536 tokens per step, attention by SDPA)
and in sliding windows of 2048² (`minidit/windows.py`: 3 x 3 windows, overlap `--overlap` px, linear
blend, `--windows-per-call` 1). Each row runs `PixArtPipeline` as a user would, in its own process:
  1. text     T5-XXL (bf16, random) is created for this stage and freed after it: "text s" is the stage
              without the creation (T5's "load"), i.e. the encoding and the freeing (whose gc.collect
              alone took ~0.5 s on the CPU with diffusers imported: many Python objects to scan)
  2. denoise  20 DPM-Solver++(2M) steps, CFG 4.5 (batch 2), the transformer in the row's dtype
  3. decode   SDXL VAE in float32, in 512-px tiles at 2048² and above (diffusers: the same tiles)
after one 1-step warm-up run; seconds and `torch.cuda.max_memory_allocated` per stage (reset at every
stage, resident weights included) come from the pipeline's `last_run_stats`.

Memory limit: `torch.cuda.set_per_process_memory_fraction(limit / total)` in the row's process
emulates a smaller card (default: 12 GiB at 1024²/2048², 24 GiB at 4096²; `--memory-limit-gib` sets one
for all, 0 = none). Torch's allocator then raises OutOfMemoryError past the limit: the row says "OOM in
<stage>". What it does not count: the CUDA context (~0.5 GiB) and memory outside torch's allocator, so
a real 24 GB card has a little less room than the emulation.

diffusers (`--diffusers-sizes`, default 1024 2048; direct rows only: diffusers has no windows):
`PixArtTransformer2DModel` + `DPMSolverMultistepScheduler` in `PixArtSigmaPipeline` (given the same
T5 states) and `AutoencoderKL`, on the same weights: both sides load one random state dict in
diffusers' layout (seeded, regenerated for each side so that only one model is resident at a time),
without a memory limit. "ratio" = minidit seconds / diffusers seconds (below 1: minidit is faster).
"latent diff (1 step)" checks that both computed the same thing: both sides' latents after one step
(diffusers' warm-up run; minidit one extra untimed call), max |difference| / max |minidit|: ~1e-4 in
float32 (the --tiny run); in bf16 (8 significant bits) expect rounding-sized differences, ~1e-2. (The pictures are no check: from random VAE weights
they are almost uniformly grey.)

FLOP floor (`benchmarks/flops.py`, from `minidit/flops.py`): the denoising stage's FLOPs (2 x MACs of every forward, windows
included) / the card's dense bf16 peak (detected by name, or `--peak-tflops`) = the floor; "floor
fraction" = floor / measured seconds.

Speed options (default off; the table's header says which were on), applied to minidit only:
`--compile` torch.compile of each transformer block (`nn.Module.compile`; the warm-up compiles),
`--cuda-graphs` torch.compile of the whole transformer in mode "reduce-overhead" (CUDA graphs),
`--channels-last-vae` the VAE's weights in channels-last memory format. `--sdpa-backends cudnn flash` (a
torch setting, so applied to both sides) restricts scaled_dot_product_attention to those kernels, in that
order of priority: the attention products are 33 % of the denoising FLOPs at 1024², 66 % at 2048² and
89 % at 4096²; torch's flash kernel is FlashAttention-2, and PyTorch 2.5's release notes report cuDNN's
attention up to 75 % faster than it on an H100.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import ChildFailed, child_case, markdown_table, report, run_child  # noqa: E402
from benchmarks.flops import card_peak_tflops, denoise_flops, floor_fraction, pixart_macs  # noqa: E402
from benchmarks.pixart_gpu import PROMPT, StandInTokenizer, random_model  # noqa: E402
from minidit.errors import InputError  # noqa: E402
from minidit.pipelines.memory import GiB, memory_method, stage  # noqa: E402
from minidit.pipelines.pixart import PixArtPipeline  # noqa: E402
from minidit.pixart import PixArt  # noqa: E402
from minidit.text.t5 import T5_TINY, T5_V1_1_XXL, T5EncoderModel, t5_weight_dtype  # noqa: E402
from minidit.vae import AutoencoderKL  # noqa: E402
from weights_loader import load_pixart, load_vae  # noqa: E402
from weights_loader.pixart import pixart_config_from_diffusers  # noqa: E402
from weights_loader.vae import vae_config_from_diffusers  # noqa: E402

PLAN = [(1024, "direct"), (2048, "direct"), (4096, "direct"), (4096, "windowed")]
DEFAULT_LIMIT_GIB = {1024: 12.0, 2048: 12.0, 4096: 24.0}
WINDOW = 2048                   # px: the 2K model's trained size
TINY_SCALE = 16                 # --tiny: every side / 16 (1024 -> 64 px), on a 2-block width-144 model

# The released models' configs in diffusers' layout (transformer/config.json, vae/config.json).
SIGMA_XL2 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                 cross_attention_dim=1152, caption_channels=4096, patch_size=2, use_additional_conditions=False)
MODELS = {"PixArt-Sigma-XL-2-1024-MS": dict(sample_size=128, interpolation_scale=2),
          "PixArt-Sigma-XL-2-2K-MS": dict(sample_size=256, interpolation_scale=4)}
SDXL_VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                       up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                       layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=1024,
                       scaling_factor=0.13025, force_upcast=True)
TINY_SHAPE = dict(num_attention_heads=2, num_layers=2, cross_attention_dim=144, caption_channels=T5_TINY.d_model)
TINY_VAE = dict(block_out_channels=[8, 16, 16, 16], layers_per_block=1, norm_num_groups=8, sample_size=128)


def model_name(size: int) -> str:
    return "PixArt-Sigma-XL-2-1024-MS" if size <= 1024 else "PixArt-Sigma-XL-2-2K-MS"


def configs(size: int, tiny: bool) -> tuple[dict, dict]:
    """(transformer, VAE) diffusers configs of the model a row uses; --tiny: the same positions at 1/16 the size."""
    transformer = dict(SIGMA_XL2, **MODELS[model_name(size)])
    if tiny:
        transformer.update(TINY_SHAPE, sample_size=transformer["sample_size"] // TINY_SCALE,
                           interpolation_scale=transformer["interpolation_scale"] / TINY_SCALE)
    return transformer, dict(SDXL_VAE_CONFIG, **(TINY_VAE if tiny else {}))


def diffusers_state(cls, config: dict, dtype, device, seed: int) -> dict:
    """A random N(0, 0.02) state dict in diffusers' layout for `cls(**config)`, the same for the same seed."""
    with torch.device("meta"):                          # shapes only: no memory, no time
        shapes = {k: v.shape for k, v in cls(**config).state_dict().items()}
    g = torch.Generator(device).manual_seed(seed)
    return {k: torch.randn(s, generator=g, device=device, dtype=dtype) * 0.02 for k, s in shapes.items()}


def apply_memory_limit(limit_gib: float | None, device) -> str:
    """Cap torch's allocator at `limit_gib` on CUDA; returns what was done, for the table."""
    if not limit_gib:
        return "none"
    if device.type != "cuda":
        return f"{limit_gib:g} (not applied: CPU)"
    total = torch.cuda.get_device_properties(device).total_memory
    if limit_gib * GiB > total:
        raise InputError(f"--memory-limit-gib {limit_gib:g} is more than this card's {total / GiB:.1f} GiB")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(limit_gib * GiB / total, device)
    return f"{limit_gib:g}"


SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}


def sdpa_backends(names):
    """Restrict torch's SDPA to these kernels, first = preferred (none given: torch's own choice)."""
    if not names:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[n]) for n in names], set_priority=True)


def speed_options(pipe: PixArtPipeline, case: dict) -> None:
    """The opt-in speed-ups (module docstring); the pipeline's code is unchanged either way."""
    if case["cuda_graphs"]:
        pipe.transformer.compile(mode="reduce-overhead")
    elif case["compile"]:
        for block in pipe.transformer.blocks:
            block.compile()
    if case["channels_last_vae"]:
        pipe.vae.to(memory_format=torch.channels_last)


def stage_record(r: dict | None) -> dict | None:
    keys = ("seconds", "peak_gib", "t5_load_s", "windows", "forward_calls")
    return None if r is None else {k: r.get(k) for k in keys}


def free(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_minidit(case: dict, device, dtype, side: int, tcfg: dict, vcfg: dict) -> dict:
    if case["diffusers_layout"]:
        from diffusers import AutoencoderKL as DiffusersVAE, PixArtTransformer2DModel
        sd = diffusers_state(PixArtTransformer2DModel, tcfg, dtype, device, seed=0)
        transformer = load_pixart(sd, pixart_config_from_diffusers(tcfg, 300), dtype=dtype, device=device)
        del sd
        vae = load_vae(diffusers_state(DiffusersVAE, vcfg, torch.float32, device, seed=1),
                       vae_config_from_diffusers(vcfg), dtype=torch.float32, device=device)
    else:                   # no diffusers: minidit's own layout, random all the same
        transformer = random_model(PixArt, pixart_config_from_diffusers(tcfg, 300), dtype, device)
        transformer.y_embedder.has_null_caption = False
        vae = random_model(AutoencoderKL, vae_config_from_diffusers(vcfg), torch.float32, device)
    t5_config, t5_dtype = (T5_TINY, torch.float32) if case["tiny"] else (T5_V1_1_XXL, torch.bfloat16)
    pipe = PixArtPipeline(transformer, vae, StandInTokenizer(), keep_text_encoder=False,
                          text_encoder_loader=lambda: random_model(T5EncoderModel, t5_config, t5_dtype, device,
                                                                   keep=t5_weight_dtype))
    speed_options(pipe, case)
    kw = dict(height=side, width=side, guidance_scale=case["guidance_scale"], use_resolution_binning=False,
              decode_tiling=case["size"] >= 2048, progress=False)
    if case["mode"] == "windowed":
        kw.update(window=WINDOW // case["scale"], window_overlap=case["overlap"] // case["scale"],
                  windows_per_call=case["windows_per_call"])
    out = dict(result="ok")
    try:
        pipe(PROMPT, num_inference_steps=1, generator=torch.Generator().manual_seed(0), **kw)   # warm-up
        t0 = time.perf_counter()
        pipe(PROMPT, num_inference_steps=case["steps"], generator=torch.Generator().manual_seed(0), **kw)
        out["total_s"] = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError:
        out["result"] = f"OOM in {list(pipe.last_run_stats)[-1]}"
    stats = pipe.last_run_stats
    out.update({name: stage_record(stats.get(name)) for name in ("text", "denoise", "decode")})
    if out["result"] == "ok":
        out["denoise"]["windows"] = stats["denoise"].get("windows", 1)
        out["denoise"]["forward_calls"] = stats["denoise"].get("forward_calls", case["steps"])
        if case["diffusers"]:
            e = pipe.encode_prompt(PROMPT, "")
            out["embeds"] = [t.cpu() for t in (e.cond, e.cond_mask, e.uncond, e.uncond_mask)]
            # one step's latents, to check that diffusers computes the same thing (its warm-up is one step)
            out["latents"] = pipe(PROMPT, num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                                  **dict(kw, output_type="latent")).float().cpu()
    del pipe, transformer, vae
    free(device)
    return out


def run_diffusers(case: dict, device, dtype, side: int, tcfg: dict, vcfg: dict, embeds, latents) -> dict:
    """The same denoising and decoding through diffusers, on the same weights and T5 states; also how far
    its latents after one step are from minidit's `latents`: max |diffusers - minidit| / max |minidit|."""
    from diffusers import AutoencoderKL as DiffusersVAE, DPMSolverMultistepScheduler, PixArtSigmaPipeline
    from diffusers import PixArtTransformer2DModel
    from diffusers.utils import logging
    logging.set_verbosity_error()                        # not its note on casting with .to(dtype)
    with torch.device(device):
        transformer = PixArtTransformer2DModel(**tcfg).to(dtype).eval()
        vae = DiffusersVAE(**vcfg).eval()
    transformer.load_state_dict(diffusers_state(PixArtTransformer2DModel, tcfg, dtype, device, seed=0))
    vae.load_state_dict(diffusers_state(DiffusersVAE, vcfg, torch.float32, device, seed=1))
    if case["size"] >= 2048:                  # the same 512-px tiles, 128-px overlap, as minidit's decode
        vae.enable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor = 512, 64, 0.25
    pipe = PixArtSigmaPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                               scheduler=DPMSolverMultistepScheduler())
    pipe.set_progress_bar_config(disable=True)
    cond, cond_mask, uncond, uncond_mask = (t.to(device) for t in embeds)
    kw = dict(prompt=None, negative_prompt=None, prompt_embeds=cond.to(dtype), prompt_attention_mask=cond_mask,
              negative_prompt_embeds=uncond.to(dtype), negative_prompt_attention_mask=uncond_mask, height=side,
              width=side, guidance_scale=case["guidance_scale"], use_resolution_binning=False, output_type="latent",
              return_dict=False)
    stats: dict = {}
    with torch.no_grad():
        for steps in (1, case["steps"]):                                    # warm-up, then measured
            with stage(stats, "denoise", device):
                latents_d = pipe(num_inference_steps=steps, generator=torch.Generator().manual_seed(0), **kw)[0]
            if steps == 1:
                diff = ((latents_d.float().cpu() - latents).abs().max() / latents.abs().max()).item()
            with stage(stats, "decode", device):
                decoded = vae.decode(latents_d.float() / vae.config.scaling_factor, return_dict=False)[0]
                pipe.image_processor.postprocess(decoded, output_type="pil")
    del pipe, transformer, vae, latents_d, decoded
    free(device)
    return {"latent_rel_diff": diff, **{name: stage_record(stats[name]) for name in ("denoise", "decode")}}


def run_case(case: dict) -> dict:
    """One row, in this process: minidit, then (if asked) diffusers; JSON-ready."""
    torch.manual_seed(0)
    device, dtype = torch.device(case["device"]), getattr(torch, case["dtype"])
    side = case["size"] // case["scale"]
    tcfg, vcfg = configs(case["size"], case["tiny"])
    limit = apply_memory_limit(case["limit_gib"], device)
    row = dict(size=case["size"], mode=case["mode"], dtype=case["dtype"], limit=limit, side=side,
               model=model_name(case["size"]))
    with sdpa_backends(case["sdpa_backends"]):
        row["minidit"] = run_minidit(case, device, dtype, side, tcfg, vcfg)
        if limit != "none" and device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, device)           # diffusers: no limit
        embeds, latents = row["minidit"].pop("embeds", None), row["minidit"].pop("latents", None)
        row["diffusers"] = run_diffusers(case, device, dtype, side, tcfg, vcfg, embeds, latents) if embeds else None
    den = row["minidit"]["denoise"]
    if row["minidit"]["result"] == "ok":
        window_side = min(side, WINDOW // case["scale"]) if case["mode"] == "windowed" else side
        row["tokens_per_forward"] = (window_side // 16) ** 2
        forward = pixart_macs(pixart_config_from_diffusers(tcfg, 300), row["tokens_per_forward"]).total
        row["denoise_flops"] = denoise_flops(forward, steps=case["steps"], batch=2 if case["guidance_scale"] > 1 else 1,
                                             windows=den["windows"])
    return row


COLUMNS = ["image", "model", "mode", "dtype", "limit GiB", "result", "text s", "text peak GiB", "denoise s",
           "denoise peak GiB", "decode s", "decode peak GiB", "total s", "windows x tokens", "calls", "denoise TFLOP",
           "floor s", "floor fraction", "diffusers denoise s", "denoise ratio", "diffusers denoise peak GiB",
           "diffusers decode s", "decode ratio", "latent diff (1 step)"]


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table_row(row: dict, peak_tflops: float | None) -> dict:
    m, d = row["minidit"], row["diffusers"] or {}
    text, den, dec = m["text"] or {}, m["denoise"] or {}, m["decode"] or {}
    ok = m["result"] == "ok"
    flops = row.get("denoise_flops")
    floor = None if flops is None or peak_tflops is None else flops / (peak_tflops * 1e12)
    ratio = lambda name: (f"{m[name]['seconds'] / d[name]['seconds']:.2f}"   # noqa: E731
                          if ok and d.get(name) else "-")
    text_s = None if text.get("seconds") is None else text["seconds"] - (text.get("t5_load_s") or 0)
    return dict(zip(COLUMNS, (
        f"{row['size']}²" + ("" if row["side"] == row["size"] else f" (tiny: {row['side']}²)"), row["model"],
        row["mode"], row["dtype"], row["limit"], m["result"], fmt(text_s), fmt(text.get("peak_gib")),
        fmt(den.get("seconds")), fmt(den.get("peak_gib")), fmt(dec.get("seconds")), fmt(dec.get("peak_gib")),
        fmt(m.get("total_s")), f"{den['windows']} x {row['tokens_per_forward']}" if ok else "-",
        den.get("forward_calls") if ok else "-",
        fmt(None if flops is None else flops / 1e12, ".4g"), fmt(floor, ".3g"),
        "-" if floor is None or not ok else f"{floor_fraction(flops, den['seconds'], peak_tflops):.2f}",
        fmt((d.get("denoise") or {}).get("seconds")), ratio("denoise"), fmt((d.get("denoise") or {}).get("peak_gib")),
        fmt((d.get("decode") or {}).get("seconds")), ratio("decode"), fmt(d.get("latent_rel_diff"), ".1e"))))


def render(rows: list[dict], header: str, peak_tflops: float | None) -> str:
    return header + "\n\n" + markdown_table([table_row(r, peak_tflops) for r in rows], COLUMNS) + "\n"


def cases(args, device) -> list[dict]:
    plan = [(s, m) for s, m in PLAN if s in args.sizes and m in args.modes]
    if not plan:
        raise InputError(f"no row of the plan {PLAN} has a size in {args.sizes} and a mode in {args.modes}")
    out = []
    for dtype in args.dtypes:
        for size, mode in plan:
            limit = DEFAULT_LIMIT_GIB[size] if args.memory_limit_gib is None else args.memory_limit_gib
            out.append(dict(size=size, mode=mode, dtype=dtype, limit_gib=limit or None, device=str(device),
                            tiny=args.tiny, scale=TINY_SCALE if args.tiny else 1, steps=args.steps,
                            guidance_scale=args.guidance_scale, overlap=args.overlap, compile=args.compile,
                            cuda_graphs=args.cuda_graphs, channels_last_vae=args.channels_last_vae,
                            sdpa_backends=args.sdpa_backends, windows_per_call=args.windows_per_call,
                            diffusers_layout=not args.no_diffusers,
                            diffusers=not args.no_diffusers and mode == "direct" and size in args.diffusers_sizes))
    return out


def header(args, device, peak_tflops) -> str:
    """What the table's numbers are: the card, the versions, the settings, the options that were on."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / GiB
        card = f"{torch.cuda.get_device_name(device)} ({total:.0f} GiB)"
    else:
        card = "CPU (--tiny: TINY models, checks the script; no GPU figure)"
    diffusers = "diffusers not compared (--no-diffusers)"
    if not args.no_diffusers:
        import diffusers
        diffusers = f"diffusers {diffusers.__version__}"
    options = [name for name, on in (("compile (each block)", args.compile), ("CUDA graphs", args.cuda_graphs),
                                     ("channels-last VAE", args.channels_last_vae)) if on] or ["none (readable path)"]
    attention = "SDPA, torch's kernel choice"
    if args.sdpa_backends:
        attention = f"SDPA restricted to {' > '.join(args.sdpa_backends)} (both sides)"
    peak = "-" if peak_tflops is None else f"{peak_tflops:g}"
    return "\n".join([
        f"PixArt-Σ on {card}; torch {torch.__version__}; {diffusers}",
        f"random weights of the released shapes; {args.steps} steps DPM-Solver++(2M), CFG {args.guidance_scale} "
        f"(batch 2); T5 {'tiny, float32' if args.tiny else 'XXL, bfloat16'}, staged; VAE float32, 512-px tiles "
        "at >= 2048²",
        f"attention: {attention}; windows: {WINDOW}² overlapping by {args.overlap} px, linear blend, "
        f"{args.windows_per_call} per transformer call",
        f"speed options (minidit): {', '.join(options)}",
        f"memory: {memory_method(device)}, reset at every stage, resident weights included; limit: "
        "torch.cuda.set_per_process_memory_fraction (diffusers unlimited)",
        f"floor: denoising FLOPs / {peak} TFLOP/s (dense bf16 = fp16 peak); floor fraction = floor / seconds; "
        "ratio = minidit seconds / diffusers seconds (below 1: minidit is faster)"])


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096], choices=[1024, 2048, 4096])
    ap.add_argument("--modes", nargs="+", default=["direct", "windowed"], choices=["direct", "windowed"])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16"], choices=["bfloat16", "float16"])
    ap.add_argument("--memory-limit-gib", type=float, help="one limit for every row (0: none); default 12 / 12 / 24")
    ap.add_argument("--diffusers-sizes", type=int, nargs="*", default=[1024, 2048])
    ap.add_argument("--no-diffusers", action="store_true", help="minidit only (diffusers not installed)")
    ap.add_argument("--overlap", type=int, default=512, help="window overlap, px (default %(default)s)")
    ap.add_argument("--windows-per-call", type=int, default=1, help="windows stacked into one transformer call")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance-scale", type=float, default=4.5)
    ap.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, if it is not known by name")
    ap.add_argument("--compile", action="store_true", help="torch.compile each transformer block")
    ap.add_argument("--cuda-graphs", action="store_true", help="torch.compile the transformer, mode reduce-overhead")
    ap.add_argument("--channels-last-vae", action="store_true")
    ap.add_argument("--sdpa-backends", nargs="+", choices=sorted(SDPA_BACKENDS), help="SDPA kernels, preferred first")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU, 2 steps, every side / 16")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    if args.tiny:
        device, args.steps, args.dtypes = torch.device("cpu"), 2, ["float32"]
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("this benchmark needs a CUDA GPU (or --tiny, which checks it on the CPU)")
    if args.cuda_graphs and device.type != "cuda":
        raise SystemExit("--cuda-graphs needs a CUDA GPU")
    peak = None
    if device.type == "cuda" or args.peak_tflops is not None:
        try:
            peak = card_peak_tflops(torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                                    args.peak_tflops)
        except InputError as e:
            raise SystemExit(str(e))
    rows = []
    for case in cases(args, device):
        if device.type == "cuda":       # its own process: its own memory limit, nothing left over from before
            try:
                rows.append(run_child(__file__, case))
            except ChildFailed as e:
                print(e, file=sys.stderr)
                rows.append(dict(size=case["size"], mode=case["mode"], dtype=case["dtype"], side=case["size"],
                                 limit=case["limit_gib"], model=model_name(case["size"]), diffusers=None,
                                 minidit=dict(result=f"failed (rc {e.returncode})", text=None, denoise=None,
                                              decode=None)))
        else:
            rows.append(json.loads(json.dumps(run_case(case))))          # as a child's report would be
        print(f"done: {case['size']} {case['mode']} {case['dtype']}: {rows[-1]['minidit']['result']}", flush=True)
    text = render(rows, header(args, device, peak), peak)
    print("\n" + text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    case = child_case()
    report(run_case(case)) if case else main()
