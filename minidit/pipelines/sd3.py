"""SD3 / SD3.5, prompt -> image: CLIP-L + bigG + T5-XXL -> MM-DiT on the rectified-flow path -> SD3 VAE.

    pipe = SD3Pipeline.from_pretrained("stable-diffusion-3.5-medium")       # a diffusers folder
    pipe = SD3Pipeline.from_single_file("sd3.5_medium.safetensors", text_encoders="text_encoders",
                                        tokenizers="sd35-tokenizers")      # the official files
    images = pipe("a photo of a cat", generator=torch.Generator().manual_seed(23))

The run, in stages (each timed, its peak memory in `pipe.last_run_stats`):
  1. text     the prompt and the negative prompt ("") -> `SD3TextEncoders` (pipelines/sd3_text.py):
              context (B, 77 + L_t5, 4096) and the pooled vector (B, 2048); the encoders are loaded
              for this stage and freed after it unless kept.
  2. denoise  x_T = randn(B, 16, H/8, W/8) from `generator` (the same numbers as the official
              `torch.manual_seed(seed)` draw and diffusers' randn_tensor) -> N steps of the sampler,
              each one MM-DiT call on [cond | uncond] (classifier-free guidance) -> latents.
  3. decode   latents / 1.5305 + 0.0609 (the SD3 VAE's scaling and shift) -> VAE -> image.
  With keep_transformer=False (`from_pretrained`, `from_single_file`) the MM-DiT lives for stage 2 only: a
  meta skeleton (its config) until then, loaded after the text encoders are freed, freed before the decode.

Two ways to sample (`SD3Sampling`):
  official (`from_single_file`, Stability-AI/sd3.5 `sd3_infer.py`): the model's own CONFIGS entry —
      SD3-medium: DPM-Solver++(2M), shift 1.0, 50 steps, CFG 5.0; SD3.5-large: DPM-Solver++(2M),
      shift 3.0, 40 steps, CFG 4.5; SD3.5-large-turbo: Euler, shift 3.0, 4 steps, CFG 1.0;
      SD3.5-medium: DPM-Solver++(2M), shift 3.0, 50 steps, CFG 5.0 (with skip-layer guidance on
      request: layers 7-9, scale 2.5, steps 1 %-20 %; CONFIGS' "cfg": 4.0 for it is never used). The samplers are k-diffusion's
      (spacing "flow_k_diffusion"), T5 is padded to at least 77 tokens (no maximum), CFG runs on
      the denoised x0 with [cond | uncond].
  diffusers (`from_pretrained`): exactly StableDiffusion3Pipeline on the same folder — its
      FlowMatchEulerDiscreteScheduler (shift 3.0 in the released folders), T5 at 256 tokens, CFG on
      the velocity with [uncond | cond], 28 steps and guidance 7.0 by default.
CFG on x0 and on the velocity are the same linear combination (x0 = x - sigma v), so only the
rounding differs.

Shape legend: B prompts x images per prompt, C = 16 latent channels, h w = H/8 W/8, L text tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from minidit.mmdit import MMDiT
from minidit.samplers import Sampler
from minidit.scheduler_config import sampler_from_scheduler_config
from minidit.vae import SD3_VAE, AutoencoderKL
from minidit.windows import tile_batch
from weights_loader import PipelineFolder, load_mmdit, load_vae
from weights_loader.io import build_on_meta
from weights_loader.mmdit import read_mmdit_config
from .checks import (check_count, check_finite, check_flag, check_generator, check_guidance, check_max_sequence_length,
                     check_negative_prompts, check_prompts, check_size, check_steps, finite_steps, precision_hint)
from .common import (Staged, StagedPipeline, check_output_type, decode_tiled_if_large, guided_model_fn, initial_noise, offload_to,
                     pipeline_windows, staged_or_loaded, to_output)
from .memory import memory_method, stage
from .sd3_text import SD3TextEncoders

MISSING_PARTS = ("A diffusers SD3 folder: `huggingface-cli download stabilityai/stable-diffusion-3.5-medium --local-dir "
                 "DIR` (or stable-diffusion-3-medium-diffusers, stable-diffusion-3.5-large; gated: accept the licence "
                 "on the hub first).")


@dataclass(frozen=True)
class SkipLayerGuidance:
    """Skip-layer guidance (SD3.5-medium's official option): in the steps between `start` and `end`
    (fractions of the run) the conditional prediction is computed once more with `layers` left out,
    and out += scale * (cond - cond_without_layers)."""
    layers: tuple[int, ...] = (7, 8, 9)
    scale: float = 2.5
    start: float = 0.01
    end: float = 0.20


@dataclass(frozen=True)
class SD3Sampling:
    sampler: Sampler                          # the flow sampler and its grid (shift)
    steps: int                                # the default number of steps
    guidance: float                           # the default CFG scale
    t5_length: str = "official"               # "official": at least 77 tokens, no maximum | "diffusers": 256
    uncond_first: bool = False                # the guided batch [uncond | cond] (diffusers) or [cond | uncond]
    skip_layer_guidance: SkipLayerGuidance | None = None


def _official(name, steps, guidance, shift, sampler="dpm_solver++", **kw) -> SD3Sampling:
    return SD3Sampling(Sampler(sampler, prediction_type="flow", spacing="flow_k_diffusion", shift=shift), steps,
                       guidance, **kw)


# sd3_infer.py CONFIGS, per released file
OFFICIAL_SAMPLING = {
    "sd3-medium": _official("sd3-medium", 50, 5.0, 1.0),
    "sd3.5-large": _official("sd3.5-large", 40, 4.5, 3.0),
    "sd3.5-large-turbo": _official("sd3.5-large-turbo", 4, 1.0, 3.0, sampler="euler"),
    "sd3.5-medium": _official("sd3.5-medium", 50, 5.0, 3.0),
}
# SD3.5-medium with the official skip-layer guidance (`--skip_layer_cfg True`). CONFIGS lists "cfg": 4.0
# for it, but sd3_infer.py reads that value into a variable it never passes on (`cfg`, while `_cfg`,
# 5.0, reaches the sampler): what runs is CFG 5.0, and that is what minidit reproduces.
OFFICIAL_SLG_SAMPLING = SD3Sampling(OFFICIAL_SAMPLING["sd3.5-medium"].sampler, 50, 5.0,
                                    skip_layer_guidance=SkipLayerGuidance())


def diffusers_sampling(scheduler_config: dict | None) -> SD3Sampling:
    """What StableDiffusion3Pipeline does with a folder's scheduler: its sampler, 28 steps, guidance 7.0,
    T5 at 256 tokens, [uncond | cond]."""
    sampler = sampler_from_scheduler_config(scheduler_config or {"_class_name": "FlowMatchEulerDiscreteScheduler"})
    if sampler.prediction_type != "flow":
        raise ValueError(f"{scheduler_config.get('_class_name')}: SD3 is a rectified-flow model; its folders ship "
                         "FlowMatchEulerDiscreteScheduler")
    return SD3Sampling(sampler, steps=28, guidance=7.0, t5_length="diffusers", uncond_first=True)


def release_name(transformer: MMDiT, path: str = "") -> str:
    """Which release a loaded MM-DiT is (its sampling defaults): by size, and "turbo" in the file or
    folder name for SD3.5-large-turbo (the same network as SD3.5-large)."""
    c = transformer.config
    if c.depth == 38:
        return "sd3.5-large-turbo" if "turbo" in Path(path).name.lower() else "sd3.5-large"
    if c.depth == 24:
        return "sd3.5-medium" if c.x_block_self_attn_layers else "sd3-medium"
    raise ValueError(f"a depth-{c.depth} MM-DiT is none of the releases: pass sampling= (e.g. "
                     "OFFICIAL_SAMPLING['sd3.5-medium'])")


class SD3Pipeline(StagedPipeline):
    """pipe(prompt, negative_prompt="", height=1024, width=1024, num_inference_steps=None,
    guidance_scale=None, generator=None) -> list[PIL.Image]; None = the sampling's defaults."""

    def __init__(self, transformer: MMDiT, vae: AutoencoderKL, text: SD3TextEncoders, sampling: SD3Sampling, *,
                 offload: bool = False, device=None, transformer_loader=None, keep_transformer: bool = True):
        """`offload=True`: the MM-DiT, the VAE and the text encoders wait on the CPU and each is moved to
        `device` for its stage only (the text encoders are freed after theirs unless kept).
        `transformer_loader`: then `transformer` is a skeleton on the meta device (its config, no weights),
        the real one is loaded by `transformer_loader()` for the denoising and, with keep_transformer=False,
        freed before the VAE decodes (`StagedPipeline.stage_transformer`)."""
        check_flag(offload, "offload")
        if device is None:
            device = "cpu" if transformer_loader is not None else next(transformer.parameters()).device
        self._device = torch.device(device)
        self.stage_transformer(transformer, transformer_loader, keep=keep_transformer, offload=offload, device=device,
                               what="MM-DiT")
        self.decoder = Staged(vae.eval(), what="VAE")
        self.text, self.sampling = text, sampling
        if offload:
            offload_to(self._device, self.decoder, text.clip_l, text.clip_g, text.t5)
        self.last_run_stats: dict = {}

    def staged_parts(self) -> tuple:
        return (self.text.clip_l, self.text.clip_g, self.text.t5, self.denoiser, self.decoder)

    @classmethod
    def from_pretrained(cls, folder, *, base=None, follow: str = "diffusers", sampling: SD3Sampling | None = None,
                        drop_t5: bool = False, dtype=torch.float32, text_dtype=None, vae_dtype=torch.float32,
                        device="cpu", keep_text_encoders: bool = False, keep_transformer: bool = True,
                        offload: bool = False) -> "SD3Pipeline":
        """A diffusers StableDiffusion3Pipeline folder (`base`: another one for the parts it lacks).
        follow="diffusers": exactly what diffusers computes from it; "official": the release's
        official sampling (`OFFICIAL_SAMPLING`, the release read off the network and, for Turbo, the
        folder's name); `sampling=` replaces either. `offload=True`: see `SD3Pipeline(...)`.

        Memory. The text encoders are loaded for the text stage and freed after it (keep_text_encoders=False).
        keep_transformer=False: the MM-DiT is not loaded here either, only transformer/config.json read; it
        is loaded when the denoising starts (the text encoders already freed) and freed when it ends
        (before the VAE decodes), so the run peaks at its largest stage, not at the sum of the models. Each
        call then reads it from disk again."""
        if follow not in ("diffusers", "official"):
            raise ValueError(f"follow must be 'diffusers' or 'official', not {follow!r}")
        parts = PipelineFolder(folder, base, hint=MISSING_PARTS)
        parts.pipeline_class(("StableDiffusion3Pipeline",))
        load_to = "cpu" if check_flag(offload, "offload") else device        # offloaded parts wait on the CPU
        transformer_dir = parts.component("transformer")
        transformer, transformer_loader = staged_or_loaded(
            lambda: load_mmdit(transformer_dir, dtype=dtype, device=load_to),
            lambda: build_on_meta(MMDiT, read_mmdit_config(transformer_dir)), keep_transformer)
        vae = load_vae(parts.component("vae"), dtype=vae_dtype, device=load_to)
        text = SD3TextEncoders.from_pretrained(folder, base=base, drop_t5=drop_t5, clip_dtype=text_dtype,
                                               t5_dtype=text_dtype, device=load_to, keep=keep_text_encoders,
                                               context_width=transformer.config.context_dim)
        if sampling is None:
            sampling = (diffusers_sampling(parts.scheduler_config()) if follow == "diffusers" else
                        OFFICIAL_SAMPLING[release_name(transformer, str(Path(folder).resolve()))])
        return cls(transformer, vae, text, sampling, offload=offload, device=device,
                   transformer_loader=transformer_loader, keep_transformer=keep_transformer)

    @classmethod
    def from_single_file(cls, checkpoint, *, tokenizers=None, text_encoders=None, text: SD3TextEncoders | None = None,
                         transformer_config=None, vae_config=SD3_VAE, drop_t5: bool = False,
                         sampling: SD3Sampling | None = None,
                         dtype=torch.float32, text_dtype=None, vae_dtype=torch.float32, device="cpu",
                         keep_text_encoders: bool = False, keep_transformer: bool = True,
                         offload: bool = False) -> "SD3Pipeline":
        """An official file (`sd3_medium.safetensors`, `sd3.5_large.safetensors`, ...; MM-DiT and VAE
        inside) + its text encoders: `text_encoders`, a folder with clip_l.safetensors,
        clip_g.safetensors and t5xxl_fp16.safetensors (`text_encoders/` of the repository), or None
        when the checkpoint holds them (`*_incl_clips_t5xxlfp16.safetensors`), with `tokenizers`, a
        folder holding tokenizer/, tokenizer_2/, tokenizer_3/; or `text`, an `SD3TextEncoders` made
        elsewhere. Samples the official way for the release (`OFFICIAL_SAMPLING`) unless `sampling=`.
        `transformer_config` / `vae_config`: only for networks that are not a release's (tests).
        `offload=True`: see `SD3Pipeline(...)`. keep_transformer=False: as in `from_pretrained`; the config
        is then read off the file's safetensors header (keys and shapes, no weights: `read_mmdit_config`)."""
        load_to = "cpu" if check_flag(offload, "offload") else device
        transformer, transformer_loader = staged_or_loaded(
            lambda: load_mmdit(checkpoint, transformer_config, dtype=dtype, device=load_to),
            lambda: build_on_meta(MMDiT, transformer_config or read_mmdit_config(checkpoint)), keep_transformer)
        vae = load_vae(checkpoint, vae_config, dtype=vae_dtype, device=load_to)
        if text is None:
            if tokenizers is None:
                raise ValueError("pass tokenizers= (a folder with tokenizer/, tokenizer_2/, tokenizer_3/, e.g. the "
                                 "release's repository) or a ready text=SD3TextEncoders(...)")
            if text_encoders is None:
                clip_l = clip_g = t5 = checkpoint
            else:
                folder = Path(text_encoders)
                clip_l, clip_g = folder / "clip_l.safetensors", folder / "clip_g.safetensors"
                t5 = next(iter(sorted(folder.glob("t5xxl*.safetensors"))), folder / "t5xxl_fp16.safetensors")
            text = SD3TextEncoders.from_files(clip_l, clip_g, None if drop_t5 else t5, tokenizers=tokenizers,
                                              clip_dtype=text_dtype, t5_dtype=text_dtype, device=load_to,
                                              keep=keep_text_encoders, context_width=transformer.config.context_dim)
        return cls(transformer, vae, text, sampling or OFFICIAL_SAMPLING[release_name(transformer, str(checkpoint))],
                   offload=offload, device=device, transformer_loader=transformer_loader,
                   keep_transformer=keep_transformer)

    @property
    def device(self):
        """Where the stages run (with offload the components wait on the CPU in between)."""
        return self._device

    def _model_fn(self, model: MMDiT, e, guidance_scale: float, num_steps: int, windows=None, latent_hw=None,
                  windowed_calls: list | None = None):
        """The sampler's model_fn: the MM-DiT's velocity, guided (and with skip-layer guidance); with
        `windows` (`common.pipeline_windows`) every network call runs on windows of the latent (each
        windowed network appended to `windowed_calls`, for its counts)."""
        s = self.sampling
        dtype = next(model.parameters()).dtype
        context, _, pooled = e.batched(uncond_first=s.uncond_first)
        context, pooled = context.to(dtype), pooled.to(dtype)

        def windowed(network):      # the network call as it is, or on windows (text tiled to k windows)
            if windows is None:
                return network
            windowed_calls.append(windows.wrap(network, latent_hw))
            return windowed_calls[-1]

        def forward(x, t):          # x: (2B, ...) when guided ([cond | uncond] as e.batched), else (B, ...)
            n = x.shape[0]
            return model(x.to(dtype), t, y=tile_batch(pooled, n), context=tile_batch(context, n)).float()
        forward = windowed(forward)
        slg = s.skip_layer_guidance
        if guidance_scale <= 1:
            if slg is not None and slg.scale > 0:
                raise ValueError("skip-layer guidance needs classifier-free guidance (guidance_scale > 1): its term "
                                 "is added to the guided prediction; drop skip_layer_guidance or raise the scale")
            return forward
        if slg is None:
            return guided_model_fn(forward, guidance_scale, uncond_first=s.uncond_first)
        cond_context, cond_pooled = e.cond.to(dtype), e.cond_pooled.to(dtype)
        calls = {"step": 0}

        def without_layers(x, t):
            n = x.shape[0]
            return model(x.to(dtype), t, y=tile_batch(cond_pooled, n), context=tile_batch(cond_context, n),
                         skip_layers=slg.layers).float()
        without_layers = windowed(without_layers)

        def skip_layer_term(x, t, cond):   # in the window: scale * (cond - cond without the layers)
            i = calls["step"]
            calls["step"] += 1
            if not (slg.scale > 0 and slg.start * num_steps < i < slg.end * num_steps):
                return None
            skipped = without_layers(x, t)
            return slg.scale * (cond - skipped)
        return guided_model_fn(forward, guidance_scale, uncond_first=s.uncond_first, extra=skip_layer_term)

    def _denoise(self, model: MMDiT, e, h: int, w: int, generator, guidance: float, steps: int, progress: bool,
                 windows, record: dict) -> torch.Tensor:
        """Stage 2: noise (B, C, h, w) -> the sampler's run with the (guided, maybe windowed) MM-DiT -> latents;
        the windows' counts go into `record`."""
        s, p = self.sampling, model.config.patch_size
        x_T = initial_noise((e.cond.shape[0], model.config.in_channels, h, w), generator, self.device)
        seen = (h, w) if windows is None else windows.window                               # what the network sees
        hint = precision_hint(model, "the MM-DiT", "dtype")
        windowed = []
        model_fn = self._model_fn(model, e, guidance, steps, windows, (h, w), windowed)
        latents = s.sampler.run(finite_steps(model_fn, "denoising", hint), x_T, steps, progress=progress,
                                image_seq_len=(seen[0] // p) * (seen[1] // p))      # for a dynamic-shift grid
        check_finite(latents, "denoising", hint)
        if windows is not None:
            record.update(windowed[0].stats(h, w))
            record["forward_calls"] = sum(net.calls for net in windowed)
            record["window_evaluations"] = sum(net.evaluations for net in windowed)
        return latents

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt="", height: int = 1024, width: int = 1024,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, num_images_per_prompt: int = 1,
                 max_sequence_length: int | None = None, output_type: str = "pil",
                 window: int | tuple[int, int] | None = None, window_overlap: int | None = None,
                 window_blend: str = "linear", windows_per_call: int = 1, progress: bool = True):
        """Images for `prompt` (str or list). output_type "pil" | "np" | "pt" | "latent".
        num_inference_steps / guidance_scale None: the sampling's defaults (`self.sampling`). guidance in
        [0, 1]: no guidance; negative, NaN or inf guidance, steps outside 1..1000, sizes that are not
        positive multiples of VAE x patch, a generator that is not a torch.Generator: refused before any
        compute (`pipelines/checks.py`). A stage that produces NaN/inf raises NonFiniteError naming it.
        `window` (pixels; None = the whole latent at once), `window_overlap`, `window_blend`,
        `windows_per_call`: sliding-window denoising (`minidit/windows.py`), as in PixArtPipeline; each
        window is centre-cropped from the position table as a window-sized image would be, and a
        dynamic-shift grid is chosen for the window's token count (what the model sees)."""
        check_output_type(output_type)
        s, config, device = self.sampling, self.transformer.config, self.device
        steps = check_steps(s.steps if num_inference_steps is None else num_inference_steps)
        guidance = check_guidance(s.guidance if guidance_scale is None else guidance_scale)
        check_generator(generator)
        check_count(num_images_per_prompt, "num_images_per_prompt")
        check_max_sequence_length(max_sequence_length)
        check_negative_prompts(negative_prompt, len(check_prompts(prompt)))
        step = self.vae.config.downsample_factor * config.patch_size
        check_size(height, width, step, "VAE x patch")
        f, p = self.vae.config.downsample_factor, config.patch_size
        windows = pipeline_windows(window, window_overlap, window_blend, windows_per_call, factor=f, patch=p,
                                   size=(height, width))
        stats = self.last_run_stats = {"device": str(device), "memory": memory_method(device)}
        with stage(stats, "text", device):
            e = self.text.encode(prompt, negative_prompt, guided=guidance > 1, num_images_per_prompt=num_images_per_prompt,
                                 t5_length=s.t5_length, max_sequence_length=max_sequence_length, device=device)
        with stage(stats, "denoise", device) as record, self.denoising(record) as model:
            # a method, so that no local of this frame still holds the MM-DiT when the stage frees it
            latents = self._denoise(model, e, height // f, width // f, generator, guidance, steps, progress, windows,
                                    record)
            del model
            record.update(size=f"{height}x{width}", steps=steps, text_tokens=e.cond.shape[1])
        if output_type == "latent":
            return latents
        with stage(stats, "decode", device) as record, self.decoder.use() as vae:
            image, record["tiled"] = decode_tiled_if_large(vae, latents)
            image = to_output(image, output_type)
        return image
