"""What every pipeline does the same way: noise, guidance, text-encoder lifetime, prompt embeddings, output.

Functions, and one small base class for the staged components: each pipeline (`dit.py`, `pixart.py`,
`toy.py`, ...) reads top to bottom and calls these where it needs them.

    initial_noise       x_T ~ N(0, I), drawn as diffusers' randn_tensor draws it
    guided_model_fn     classifier-free guidance around one batched network call
    Staged              a component loaded (or moved to the device) for its stage, freed (or offloaded) after it
    StagedPipeline      the pipelines' base: the transformer kept, or a meta skeleton until the denoising
                        (`stage_transformer`, `staged_or_loaded`: keep_transformer=False in every pipeline)
    PromptEmbeds        the text conditioning of one call, for any number of encoders' outputs
    check_output_type / to_output     "pil" | "np" | "pt" | "latent"
    check_prompt_input  a call's prompt / negative prompt, or its PromptEmbeds
    pipeline_windows    the pipelines' `window=` option (pixels) -> a `minidit.windows.WindowedModel` factory

The guidance convention, for every family: the sampler works on the B samples you keep; the
guided model function doubles the batch inside, runs the network once on [cond | uncond] (or
[uncond | cond]), and returns uncond + s (cond - uncond) for those B samples. (DiT's official
sampler also carries the null-class half through its sampler; that only changes which random
numbers a seed gives, and `pipelines/dit.py` reproduces it with the sampler's `noise_fn`.)

Shape legend: B samples, C latent channels, h w latent size, H W image size, L text tokens, D width.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from minidit.guidance import cfg
from minidit.errors import InputError
from minidit.vae import decode_latents, to_pil
from minidit.windows import WindowedModel, check_window_options, window_grid
from weights_loader import CheckpointError
from .checks import (OUTPUT_TYPES, check_flag, check_negative_prompts, check_output_type,  # noqa: F401 (re-exported)
                     check_prompts)
from .memory import format_stats, release_freed_memory


def initial_noise(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """x_T ~ N(0, I) of `shape`: drawn on the generator's device and moved to `device` (diffusers'
    randn_tensor), or, without a generator, from the global RNG on `device` (the official scripts)."""
    noise_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=noise_device, dtype=dtype).to(device)


def guided_model_fn(forward, guidance_scale: float, *, uncond_first: bool = False, guided_channels: int | None = None,
                    extra=None):
    """The sampler's model_fn(x, t) for classifier-free guidance (Ho & Salimans, arXiv:2207.12598).

    forward(x2, t2) runs the network once on the doubled batch: x2 = [x, x], t2 = [t, t], with the
    caller's conditioning already arranged [cond | uncond] (or [uncond | cond], `uncond_first`, as
    diffusers' text-to-image pipelines). The result is uncond + s (cond - uncond) on the first
    `guided_channels` output channels (default: x's channel count, i.e. the prediction; DiT's
    official code guides 3); the other channels (a learned variance) are the conditional half's.
    `extra(x, t, cond)`, if given, returns a term added to the result, computed from the conditional
    prediction (skip-layer guidance, `pipelines/sd3.py`), or None for no term at this call."""
    def model_fn(x, t):
        out = forward(torch.cat([x, x]), torch.cat([t, t]))                          # (2B, C_out, ...)
        first, second = out.chunk(2)
        cond, uncond = (second, first) if uncond_first else (first, second)
        n = x.shape[1] if guided_channels is None else guided_channels
        guided = torch.cat([cfg(cond[:, :n], uncond[:, :n], guidance_scale), cond[:, n:]], dim=1)
        term = None if extra is None else extra(x, t, cond)
        return guided if term is None else guided + term
    return model_fn


@dataclass(frozen=True)
class PipelineWindows:
    """Sliding-window denoising as the pipelines offer it (`minidit/windows.py`), sizes in latent px."""
    window: tuple[int, int]
    overlap: int
    blend: str
    windows_per_call: int
    patch: int

    def wrap(self, forward, latent_hw: tuple[int, int]) -> WindowedModel:
        """`forward(x, t)`, the network call, on windows of a latent of `latent_hw` (checked here)."""
        windowed = WindowedModel(forward, self.window, self.overlap, blend=self.blend,
                                 windows_per_call=self.windows_per_call, patch=self.patch)
        windowed.grid(*latent_hw)
        return windowed


def pipeline_windows(window, overlap, blend: str, windows_per_call: int, *, factor: int, patch: int,
                     size: tuple[int, int]) -> PipelineWindows | None:
    """The `window=` options of a pipeline call, in IMAGE pixels, -> latent px (None: no windows).
    window: int or (height, width), a multiple of factor x patch (the VAE's downsampling x the patch
    size), at most the image `size` = (H, W); overlap None = a quarter of the window, rounded down to
    that multiple. InputError otherwise, before any compute."""
    if window is None:
        if overlap is not None:
            raise InputError("window_overlap without window: pass window= (pixels) to denoise in windows")
        return None
    step = factor * patch
    wh, ww = (window, window) if not isinstance(window, (tuple, list)) else tuple(window)
    for name, v in (("window", wh), ("window", ww)):
        if isinstance(v, bool) or not isinstance(v, int) or v < step or v % step:
            raise InputError(f"{name} must be a positive multiple of {step} pixels (VAE x{factor} x patch {patch}), "
                             f"got {window!r}")
    if overlap is None:
        overlap = min(wh, ww) // 4 // step * step
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0 or overlap % step:
        raise InputError(f"window_overlap must be a non-negative multiple of {step} pixels, got {overlap!r}")
    if overlap >= min(wh, ww):
        raise InputError(f"window_overlap {overlap} px must be smaller than the window {wh}x{ww} px")
    if wh > size[0] or ww > size[1]:
        raise InputError(f"window {wh}x{ww} px is larger than the {size[0]}x{size[1]} image: use a window no "
                         "larger than the image, or no window")
    latent_window, latent_overlap = check_window_options((wh // factor, ww // factor), overlap // factor, blend=blend,
                                                         windows_per_call=windows_per_call, patch=patch)
    window_grid(size[0] // factor, size[1] // factor, latent_window, latent_overlap, patch=patch)
    return PipelineWindows(latent_window, latent_overlap, blend, windows_per_call, patch)


class Staged:
    """A component that lives only while its stage needs it.

    * keep=False with a `loader`: loaded by `loader()` when the stage starts and freed when it ends
      (T5-XXL's 4.7 B parameters never share memory with the denoising; a transformer freed before the
      VAE decodes).
    * offload=True: kept, but on the CPU between its stages; `use()` moves it to `device` for its
      stage and back to the CPU after (on a GPU: only the active stage's weights occupy the card).
    * a loaded `module` and no loader: simply kept (on `device`, if offload is off).

    `moves` records every device move (`(what, device)`), so a run shows what was offloaded."""

    def __init__(self, module=None, loader=None, *, keep: bool = True, what: str = "text encoder",
                 offload: bool = False, device=None):
        if module is None and loader is None:
            raise ValueError(f"pass a {what} or a loader for it")
        self.module, self.loader, self.what = module, loader, what
        self.keep = keep or loader is None
        self.offload, self.device = bool(offload), None if device is None else torch.device(device)
        self.last_load_seconds: float | None = None
        self.moves: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def use(self):
        """`with staged.use() as module:` — loaded if needed (and moved to `device` if offloaded),
        freed (or moved back to the CPU) afterwards unless kept."""
        if self.module is None:
            t0 = time.perf_counter()
            self.module = self.loader()
            self.last_load_seconds = time.perf_counter() - t0
        if self.offload and self.device is not None:
            self._move(self.device)
        try:
            yield self.module
        finally:
            if not self.keep:
                self.free()
            elif self.offload:
                self._move(torch.device("cpu"))

    def _move(self, device: torch.device) -> None:
        self.module.to(device)
        self.moves.append((self.what, str(device)))
        if device.type == "cpu" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def free(self) -> None:
        self.module = None
        release_freed_memory()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class StagedPipeline:
    """What the staged pipelines share: `self.denoiser` and `self.decoder` are `Staged` components,
    `staged_parts()` lists every Staged part (text encoders first, in stage order).

    The transformer, the same way in every pipeline (`stage_transformer`): loaded once and kept, or, with
    a loader, built at construction as a skeleton on the meta device (`weights_loader.io.build_on_meta`:
    its config, no weights) and loaded by the loader when the denoising starts; with keep_transformer=False
    it is freed when the denoising ends, so the text encoders, the transformer and the VAE decode never
    share memory. The pipelines read it inside `with self.denoising(record) as model:` and hand it to a
    method, so that no local variable of `__call__` still holds it once the stage frees it."""

    def stage_transformer(self, transformer, loader=None, *, keep: bool = True, offload: bool = False, device=None,
                          what: str = "transformer") -> None:
        """`self.denoiser` for `transformer`, a loaded module, or, with `loader`, its skeleton on meta: then
        `loader()` loads it for the denoising (checked to have the skeleton's config) and keep=False frees it
        after. offload=True: it waits on the CPU and is moved to `device` for its stage."""
        check_flag(keep, "keep_transformer")
        check_flag(offload, "offload")
        self._skeleton = transformer.eval()
        if loader is not None:
            loader = _checked_loader(loader, transformer, what)
        self.denoiser = Staged(None if loader is not None else transformer, loader, keep=keep, what=what)
        if offload:
            offload_to(device, self.denoiser)

    @property
    def transformer(self):
        """The loaded transformer, or, while it is not in memory (keep_transformer=False), its skeleton on
        the meta device: its config, no weights."""
        module = self.denoiser.module
        return module if module is not None else getattr(self, "_skeleton", None)

    @contextlib.contextmanager
    def denoising(self, record: dict):
        """`with self.denoising(record) as model:` the real transformer for the denoising stage (loaded if
        staged, the seconds in record["transformer_load_s"]; moved to the device if offloaded)."""
        loading = self.denoiser.module is None
        with self.denoiser.use() as model:
            if loading:
                record["transformer_load_s"] = round(self.denoiser.last_load_seconds, 2)
            yield model
            del model

    @property
    def vae(self):
        return self.decoder.module

    def staged_parts(self) -> tuple:
        return (self.denoiser, self.decoder)

    @property
    def moves(self) -> list[tuple[str, str]]:
        """Every device move of an offloaded component so far: (component, device)."""
        return [m for part in self.staged_parts() if part is not None for m in part.moves]


def staged_or_loaded(loader, skeleton, keep: bool) -> tuple:
    """(transformer, loader) for `StagedPipeline.stage_transformer`: keep=True loads it now, (loader(), None);
    keep=False builds only its skeleton, (skeleton(), loader): the weights wait for the denoising."""
    if check_flag(keep, "keep_transformer"):
        return loader(), None
    return skeleton(), loader


def _checked_loader(loader, skeleton, what: str):
    """`loader`, whose module must have the config the pipeline was built for (the skeleton's)."""
    def load():
        module = loader()
        if getattr(module, "config", None) != getattr(skeleton, "config", None):
            raise CheckpointError(f"the {what} loaded now has the config {module.config}, not the pipeline's "
                             f"{skeleton.config}: its file changed since the pipeline was made; make the pipeline again")
        return module
    return load


def offload_to(device, *parts: "Staged | None") -> None:
    """Turn on CPU offload for `parts` (Staged components, None skipped): each waits on the CPU and is
    moved to `device` for its stage (`Staged.use`). A module already loaded is moved to the CPU now."""
    for part in parts:
        if part is None:
            continue
        part.offload, part.device = True, torch.device(device)
        if part.module is not None and not any(t.is_meta for t in part.module.parameters()):
            part.module.to("cpu")


# Decode in tiles above this many pixels: an untiled SDXL/SD3-VAE decode needs ~3.5-4.5 KiB per output
# pixel in float32 (benchmarks/vae_decode.py: ~3.6 GiB at 1024², ~15-19 GiB at 2048²), a tiled one about
# 1 GiB whatever the size. Tiles of 64 latent px (512 px), overlap 16 (diffusers' tiling defaults).
TILE_ABOVE_PIXELS = 2 * 1024 * 1024
DECODE_TILE, DECODE_OVERLAP = 64, 16


def decode_tiled_if_large(vae, latents: torch.Tensor, tiling: bool | None = None) -> tuple[torch.Tensor, bool]:
    """(images, tiled): `decode_latents` whole, or in tiles when `tiling` is True or, for None (automatic),
    when the image has more than TILE_ABOVE_PIXELS pixels."""
    f = vae.config.downsample_factor
    pixels = latents.shape[-2] * latents.shape[-1] * f * f
    tiled = pixels > TILE_ABOVE_PIXELS if tiling is None else tiling
    tile = dict(tile=DECODE_TILE, overlap=DECODE_OVERLAP) if tiled else {}
    return decode_latents(vae, latents, **tile), tiled


@dataclass
class PromptEmbeds:
    """The text conditioning of one call. Per branch (cond, and uncond when guided): the encoder
    states, their mask (1 = token) and, for models that read one (SD3), the pooled text vector.
    A model with two text encoders (Hunyuan-DiT: BERT + mT5) keeps one PromptEmbeds per encoder."""
    cond: torch.Tensor                         # (B, L, D)
    cond_mask: torch.Tensor | None = None      # (B, L)
    cond_pooled: torch.Tensor | None = None    # (B, D_pooled)
    uncond: torch.Tensor | None = None
    uncond_mask: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None

    @property
    def guided(self) -> bool:
        return self.uncond is not None

    def repeat(self, n: int) -> "PromptEmbeds":
        """Every entry repeated n times per prompt (num_images_per_prompt), as diffusers repeats."""
        return PromptEmbeds(**{f.name: None if getattr(self, f.name) is None else
                               getattr(self, f.name).repeat_interleave(n, dim=0) for f in fields(self)})

    def batched(self, uncond_first: bool = False) -> tuple:
        """(states, mask, pooled) for one network call: the cond entries alone, or both branches
        concatenated for `guided_model_fn` ([cond | uncond], or [uncond | cond])."""
        if not self.guided:
            return self.cond, self.cond_mask, self.cond_pooled

        def cat(a, b):
            return None if a is None else torch.cat([b, a] if uncond_first else [a, b])
        return (cat(self.cond, self.uncond), cat(self.cond_mask, self.uncond_mask),
                cat(self.cond_pooled, self.uncond_pooled))


def check_prompt_input(prompt, negative_prompt, prompt_embeds) -> None:
    """A call's text input: a prompt (str or list) with its negative prompt(s), or the PromptEmbeds of
    `encode_prompt`; an InputError otherwise, before any compute."""
    if prompt_embeds is None:
        if prompt is None:
            raise InputError("pass a prompt (or prompt_embeds from encode_prompt)")
        check_negative_prompts(negative_prompt, len(check_prompts(prompt)))
    elif not isinstance(prompt_embeds, PromptEmbeds):
        raise InputError(f"prompt_embeds must be the PromptEmbeds of encode_prompt, not {type(prompt_embeds).__name__}")


def to_output(image: torch.Tensor, output_type: str):
    """Decoded images (B, 3, H, W) in [-1, 1] -> "pil": list of PIL images | "np": (B, H, W, 3) float32
    in [0, 1] (diffusers' layout) | "pt": (B, 3, H, W) float in [0, 1]."""
    check_output_type(output_type)
    if output_type == "pil":
        return to_pil(image)
    image = (image.float() / 2 + 0.5).clamp(0, 1)
    if output_type == "np":
        return image.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
    if output_type == "pt":
        return image
    raise ValueError("latents are returned before decoding: handle output_type='latent' in the pipeline")


# --------------------------------------------------------------------------------------------
# The command line's model table (`minidit/cli.py`): one row per model, rows from each family's *_cli.py
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    """One row of `python -m minidit models`: what `generate --model NAME` runs and where to get it."""
    name: str          # --model NAME
    family: str        # which family's command line runs it ("dit", "pixart")
    summary: str       # what it is, one line
    side: int          # the training resolution, pixels
    repo: str          # the diffusers repository on the Hugging Face hub
    original: str      # the original checkpoint's file name
    variant: str = ""  # PixArt: "alpha" | "sigma"


def hub_download(entry: ModelEntry) -> str:
    """The command that downloads a model's diffusers repository into a folder of the same name."""
    return f"huggingface-cli download {entry.repo} --local-dir {entry.repo.split('/')[1]}"


def default_device(device: str | None) -> str:
    """The device asked for, or CUDA when there is one, else the CPU."""
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def signature_defaults(pipeline) -> dict:
    """{"steps", "guidance"}: the defaults of a pipeline's __call__ (the CLI's defaults for DiT, PixArt)."""
    d = call_defaults(pipeline.__call__)
    return {"steps": d["num_inference_steps"], "guidance": d["guidance_scale"]}


def text_arguments_error(args, family: str) -> str | None:
    """What is wrong with a text-to-image `generate` call's --class / --prompt, or None."""
    if args.class_labels:
        return f"{family} is text-conditional: pass --prompt, not --class"
    if not args.prompt:
        return 'pass --prompt "..." (and optionally --negative-prompt)'
    return None


def run_text_to_image(pipe, args, call_kwargs: dict) -> int:
    """The end of a text-to-image `generate`: the prompt (and window) options given on the command line, one seeded
    run, the first image written to --out, the per-stage time and memory printed. A ValueError of the
    pipeline (a bad size, ...) is printed, exit code 2."""
    for option in ("negative_prompt", "height", "width", "window", "window_overlap"):
        if getattr(args, option, None) is not None:
            call_kwargs = {**call_kwargs, option: getattr(args, option)}
    try:
        images = pipe(args.prompt, generator=torch.Generator().manual_seed(args.seed), **call_kwargs)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    out = Path(args.out)
    images[0].save(out)
    print(f"wrote {out} ({images[0].size[0]}x{images[0].size[1]}, generated at "
          f"{pipe.last_run_stats['denoise']['size']})")
    print(format_stats(pipe.last_run_stats))
    return 0


def call_defaults(fn) -> dict:
    """The default of every keyword of `fn` (a pipeline's __call__): the one source of the CLI's defaults."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}
