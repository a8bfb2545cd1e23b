"""PixArt-α / PixArt-Σ, prompt -> image: T5-XXL -> PixArt transformer + DPM-Solver++(2M) -> VAE.

    pipe = PixArtPipeline.from_pretrained("PixArt-Sigma-XL-2-1024-MS")   # a diffusers folder, see below
    images = pipe("a small cactus with a happy face", generator=torch.Generator().manual_seed(0))
    print(format_stats(pipe.last_run_stats))   # time + peak memory per stage (minidit.pipelines.memory)

The run, in stages (each timed, its peak memory recorded in `pipe.last_run_stats`, see
`minidit/pipelines/memory.py` for what "peak" means on GPU and CPU):
  1. text     the prompt, lower-cased and stripped, -> T5 tokens (`CAPTION_TOKENS`: 120 for α, 300 for Σ) -> T5-XXL
              states (B, L, 4096) + mask; the same for the negative prompt ("" by default). T5 is
              loaded for this stage and freed after it (`keep_text_encoder=False`, the default of
              `from_pretrained`), so its 4.7 B parameters never share memory with the denoising.
  2. denoise  noise (B, 4, H/8, W/8) from `generator` -> 20 DPM-Solver++(2M) steps, each one
              transformer call on [uncond | cond] (classifier-free guidance 4.5) -> latents.
     With `window=` (pixels, e.g. the trained side) the transformer runs on overlapping windows of the
              latent, merged every step (`minidit/windows.py`, MultiDiffusion): images larger than the
              model was trained for, at the cost of windows x one window-sized forward per step; the
              image is then generated at the asked size (no binning: the buckets are whole images at the
              trained size) and `last_run_stats["denoise"]` records the windows and network calls.
  3. decode   VAE decode of latents / scaling_factor, in 512-px tiles (128-px overlap) when the
              image has more than TILE_ABOVE_PIXELS pixels; resize + centre crop to the asked size.
  With `from_pretrained(..., keep_transformer=False)` (or `from_original`; every pipeline has it, shared in
  `common.StagedPipeline`) the transformer, too, lives for its stage only:
  loaded after T5 is freed, freed before the decode, so the run peaks at its largest stage, not at the
  sum of the three models (measured: benchmarks/pipeline_memory.py). `offload=True` keeps every
  component on the CPU between its stages and moves it to the device for its own (`common.Staged`).

Resolution binning (`use_resolution_binning=True`): the asked height x width is snapped to the
model's nearest aspect-ratio bucket (`minidit/pipelines/resolution.py`), generated there and
resized back, as diffusers does: off-bucket sizes are what makes PixArt's pictures garbled.
α-1024 also gets the bucket's (height, width) and height/width as micro-conditions.

Two ways to sample, the fields of `PixArtSampling`:
  diffusers (`from_pretrained`): exactly what diffusers' PixArtAlphaPipeline / PixArtSigmaPipeline
      compute from the same folder: the scheduler's "linspace" timesteps, uncond = T5(negative_prompt)
      with its own mask.
  official (`from_original`, `OFFICIAL_SAMPLING` for Σ, `OFFICIAL_ALPHA_SAMPLING` for α): PixArt's
      scripts/inference.py: DPMS on the "time_uniform" grid; uncond = the null caption stored in the
      .pth (`y_embedding`: α's trained "no caption" input; Σ's file holds T5(""), what its script
      encodes at run time), used with the prompt's mask (the official forward reuses the conditional
      mask for the unconditional half). The two repositories' copies of DPM-Solver differ in one
      line: Σ's takes a first-order last step always, α's only below 10 steps
      (`lower_order_final and steps < 10`), so α's official 20-step run ends with a 2M step.

Precision (`default_dtypes`): on CUDA the transformer runs in float16 (the official inference
dtype), T5 in bfloat16 (never unguarded float16: `weights_loader.load_t5` keeps the feed-forward
output `wo` in float32 if float16 is asked for), the VAE in float32 (the SDXL VAE overflows in
float16); on CPU everything is float32. The sampler itself always runs in float32.

Caption cleaning: diffusers' `clean_caption=True` (URLs, HTML with bs4, ftfy, ~40 regexes) is not
reproduced; prompts are lower-cased and stripped, which is what diffusers does with
`clean_caption=False` (the official α script cleans captions, Σ's does not).

Shape legend: B prompts x images per prompt, L caption tokens, C latent channels, h w = H/8 W/8.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minidit.pixart import CAPTION_TOKENS, PixArt
from minidit.samplers import Sampler
from minidit.scheduler_config import sampler_from_scheduler_config
from minidit.text.t5 import guard_fp16
from minidit.vae import SD_VAE, SDXL_VAE, AutoencoderKL, decode_latents
from minidit.windows import tile_batch
from weights_loader import PipelineFolder, load_pixart, load_t5, load_t5_tokenizer, load_vae
from weights_loader.pixart import CAPTION_LENGTH, PIPELINE_VARIANTS, pixart_skeleton
from .checks import (check_count, check_finite, check_flag, check_generator, check_guidance, check_max_sequence_length,
                     check_negative_prompts, check_prompts, check_size, check_steps, finite_steps, precision_hint)
from .common import (PromptEmbeds, Staged, StagedPipeline, check_output_type, check_prompt_input, guided_model_fn,
                     initial_noise, offload_to, pipeline_windows, staged_or_loaded, to_output)
from .memory import memory_method, stage
from .resolution import SIDES, classify_height_width_bin, inference_bins, resize_and_crop


# Decode in tiles above this many pixels. An untiled SDXL-VAE decode needs ~4.5 KiB per output pixel
# in float32 (benchmarks/vae_decode.py, CPU, fitted on 128² and 256²: ~5 GiB at 1024², ~19 GiB at
# 2048²). So the 1024 buckets (0.9-1.0 x 1024² px) decode whole, and the 2K model's (4x that) in tiles,
# whose peak does not grow with the image. Tiles: 64 latent px = 512 px, overlap 16 = 128 px (diffusers'
# tiling defaults).
TILE_ABOVE_PIXELS = 2 * 1024 * 1024
DECODE_TILE, DECODE_OVERLAP = 64, 16
MISSING_PARTS = ("A transformer-only download needs the rest of the pipeline beside it: for PixArt-Σ "
                 "`huggingface-cli download PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers --include model_index.json "
                 "\"scheduler/*\" \"text_encoder/*\" \"tokenizer/*\" \"vae/*\" --local-dir SAME_FOLDER` (or into another "
                 "folder, passed as base=); for PixArt-α the same from PixArt-alpha/PixArt-XL-2-1024-MS.")


@dataclass(frozen=True)
class PixArtSampling:
    # DPM-Solver++(2M) on diffusers' "linspace" grid (linear betas 1e-4..0.02, as PixArt was trained),
    # or on the official "time_uniform" grid
    sampler: Sampler = Sampler("dpm_solver++", spacing="linspace")
    uncond: str = "negative_prompt"   # T5(negative_prompt), own mask | "null_caption": y_embedding, prompt's mask


DIFFUSERS_SAMPLING = PixArtSampling()
OFFICIAL_SAMPLING = PixArtSampling(Sampler("dpm_solver++", spacing="time_uniform"), uncond="null_caption")  # Σ's script
# α's copy of DPM-Solver takes a first-order last step only below 10 steps
OFFICIAL_ALPHA_SAMPLING = replace(OFFICIAL_SAMPLING, sampler=replace(OFFICIAL_SAMPLING.sampler, lower_order_final_below=10))


def sampling_from_scheduler_config(cfg: dict) -> PixArtSampling:
    """The diffusers `scheduler_config.json` of a PixArt folder -> PixArtSampling: the scheduler
    (every PixArt folder ships DPMSolverMultistepScheduler) and T5(negative_prompt) as uncond."""
    sampler = sampler_from_scheduler_config(cfg)
    if sampler.name != "dpm_solver++" or sampler.prediction_type != "epsilon":
        raise ValueError(f"scheduler {cfg.get('_class_name')!r} ({sampler.name}, {sampler.prediction_type}): minidit's "
                         "PixArt pipeline runs DPM-Solver++(2M) on epsilon (DPMSolverMultistepScheduler, what every "
                         "PixArt folder ships)")
    return PixArtSampling(sampler=sampler)


def variant_of(transformer: PixArt) -> str:
    """"alpha" or "sigma", from the caption length the transformer was trained with (CAPTION_TOKENS)."""
    return "alpha" if transformer.config.model_max_length == CAPTION_TOKENS["alpha"] else "sigma"


def default_dtypes(device) -> tuple[torch.dtype, torch.dtype, torch.dtype]:
    """(transformer, T5, VAE) dtypes: see "Precision" in the module docstring."""
    if torch.device(device).type == "cuda":
        return torch.float16, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32, torch.float32
    return torch.float32, torch.float32, torch.float32


def t5_states(t5, tokenizer, texts: list[str], max_length: int, device, *,
              lower: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """lower().strip() (diffusers without clean_caption; lower=False: the text as given) -> tokens padded
    to `max_length` -> T5 states (B, L, C_cap) and mask (B, L). Also the video pipelines' T5 stage."""
    tokens = tokenizer([t.lower().strip() if lower else t for t in texts], max_length=max_length)
    ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
    guard_fp16(t5)
    states = t5(ids, attention_mask=mask).last_hidden_state
    check_finite(states, "text encoding (T5)", precision_hint(t5, "T5", "text_encoder_dtype"))
    return states, mask


class PixArtPipeline(StagedPipeline):
    """pipe(prompt, negative_prompt="", height, width, num_inference_steps=20, guidance_scale=4.5,
    generator=None) -> list[PIL.Image]."""

    def __init__(self, transformer: PixArt, vae: AutoencoderKL, tokenizer, text_encoder=None, *,
                 sampling: PixArtSampling = DIFFUSERS_SAMPLING, text_encoder_loader=None,
                 keep_text_encoder: bool = True, variant: str | None = None, transformer_loader=None,
                 keep_transformer: bool = True, offload: bool = False, device=None):
        """`text_encoder`: a loaded T5, or None and `text_encoder_loader()` loads one when needed
        (and, with keep_text_encoder=False, it is freed after every encoding).
        `transformer_loader`: then `transformer` is a skeleton built on the meta device (its config, no
        weights), the real one is loaded by `transformer_loader()` for the denoising and, with
        keep_transformer=False, freed before the VAE decodes (see "Memory" in `from_pretrained`).
        `offload=True`: every component waits on the CPU and is moved to `device` for its stage only."""
        check_flag(offload, "offload")
        if device is None:
            device = "cpu" if transformer_loader is not None else next(transformer.parameters()).device
        self._device = torch.device(device)
        self.stage_transformer(transformer, transformer_loader, keep=keep_transformer, offload=offload, device=device,
                               what="PixArt transformer")
        self.decoder = Staged(vae.eval(), what="VAE")
        self.text = Staged(text_encoder, text_encoder_loader, keep=keep_text_encoder, what="T5 text encoder")
        if offload:
            offload_to(device, self.decoder, self.text)
        self.tokenizer, self.sampling = tokenizer, sampling
        self.variant = variant or variant_of(transformer)
        self.last_run_stats: dict = {}

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, folder, *, base=None, dtype=None, text_encoder_dtype=None, vae_dtype=None,
                        device="cpu", keep_text_encoder: bool = False, keep_transformer: bool = True,
                        offload: bool = False) -> "PixArtPipeline":
        """A diffusers PixArt folder: `huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-1024-MS
        --local-dir DIR` (or PixArt-XL-2-1024-MS, PixArt-XL-2-512x512, PixArt-Sigma-XL-2-512-MS / -2K-MS).
        `base`: another such folder supplying the components `folder` lacks (e.g. a transformer-only
        download + `PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers` for T5, tokenizer and VAE).
        Dtypes default to `default_dtypes(device)`.

        Memory. T5 is loaded for the text stage and freed after it (keep_text_encoder=False). With
        keep_transformer=False the transformer is not loaded here either, only its config.json read: it
        is loaded when the denoising starts (T5 already freed) and freed when it ends (before the VAE
        decodes), so no two of the three big parts are ever in memory together: the peak is the largest
        stage, not the sum (benchmarks/pipeline_memory.py). Each call then reads the transformer from
        disk again. `offload=True` keeps what is loaded on the CPU and moves it to `device` for its stage."""
        parts = PipelineFolder(folder, base, hint=MISSING_PARTS)
        pipeline_class = parts.pipeline_class(tuple(PIPELINE_VARIANTS))
        check_flag(keep_transformer, "keep_transformer")
        check_flag(offload, "offload")
        d, te, v = default_dtypes(device)
        load_to = "cpu" if offload else device
        # The caption length (CAPTION_TOKENS) comes from the pipeline class: its model_index.json may be
        # in `base`, where load_pixart, given only transformer/, would not look.
        overrides = {"model_max_length": CAPTION_LENGTH[pipeline_class]}
        transformer_dir = parts.component("transformer")

        def transformer_loader():
            return load_pixart(transformer_dir, dtype=dtype or d, device=load_to, overrides=overrides)
        transformer, transformer_loader = staged_or_loaded(
            transformer_loader, lambda: pixart_skeleton(transformer_dir, overrides=overrides), keep_transformer)
        text_dir = parts.component("text_encoder")
        sched = parts.scheduler_config()
        if sched is None:
            warnings.warn(f"no scheduler/scheduler_config.json in {folder}: sampling with the defaults of "
                          "DPMSolverMultistepScheduler(), the scheduler every PixArt repository ships", stacklevel=2)
        sampling = sampling_from_scheduler_config(sched or {"_class_name": "DPMSolverMultistepScheduler"})
        return cls(transformer, load_vae(parts.component("vae"), dtype=vae_dtype or v, device=load_to),
                   load_t5_tokenizer(parts.component("tokenizer")), sampling=sampling,
                   keep_text_encoder=keep_text_encoder,
                   text_encoder_loader=lambda: load_t5(text_dir, dtype=text_encoder_dtype or te, device=load_to),
                   variant=PIPELINE_VARIANTS[pipeline_class], transformer_loader=transformer_loader,
                   keep_transformer=keep_transformer, offload=offload, device=device)

    @classmethod
    def from_original(cls, checkpoint, text_encoder, vae, *, tokenizer=None, config=None,
                      sampling: PixArtSampling | None = None, dtype=None, text_encoder_dtype=None,
                      vae_dtype=None, device="cpu", keep_text_encoder: bool = False, keep_transformer: bool = True,
                      offload: bool = False) -> "PixArtPipeline":
        """An original `.pth` (`PixArt-Sigma-XL-2-1024-MS.pth`, ...) + a T5 folder (a transformers
        T5 folder such as PixArt-alpha's `t5-v1_1-xxl/`, or a pipeline root such as
        `pixart_sigma_sdxlvae_T5_diffusers`) + a VAE (diffusers folder, or an ldm file: read as the
        SD VAE for α, the SDXL VAE for Σ). The tokenizer's spiece.model is looked up in `tokenizer`,
        else in `text_encoder`. Samples the official way (`OFFICIAL_ALPHA_SAMPLING` /
        `OFFICIAL_SAMPLING`) unless `sampling=` says otherwise (e.g. `DIFFUSERS_SAMPLING`).
        keep_transformer=False, offload: as in `from_pretrained`. The config is then read off the file's
        keys and shapes (`weights_loader.pixart.pixart_skeleton`: a torch.save zip archive is memory-mapped
        and only its index, `pos_embed` and the null caption are read; a legacy pre-zip pickle is read whole
        once for that, then freed); the file is checked in full when the transformer is first loaded."""
        d, te, v = default_dtypes(device)
        load_to = "cpu" if check_flag(offload, "offload") else device
        transformer, transformer_loader = staged_or_loaded(
            lambda: load_pixart(checkpoint, config, dtype=dtype or d, device=load_to),
            lambda: pixart_skeleton(checkpoint, config), keep_transformer)
        if transformer_loader is not None and transformer.y_embedder.has_null_caption:   # as the loader casts it
            transformer.y_embedder.y_embedding = transformer.y_embedder.y_embedding.to(dtype or d)
        alpha = variant_of(transformer) == "alpha"
        vae_config = None if Path(vae).is_dir() else SD_VAE if alpha else SDXL_VAE
        return cls(transformer, load_vae(vae, vae_config, dtype=vae_dtype or v, device=load_to),
                   load_t5_tokenizer(tokenizer or text_encoder),
                   sampling=sampling or (OFFICIAL_ALPHA_SAMPLING if alpha else OFFICIAL_SAMPLING),
                   text_encoder_loader=lambda: load_t5(text_encoder, dtype=text_encoder_dtype or te, device=load_to),
                   keep_text_encoder=keep_text_encoder, variant="alpha" if alpha else "sigma",
                   transformer_loader=transformer_loader, keep_transformer=keep_transformer, offload=offload,
                   device=device)

    @property
    def device(self):
        """Where the stages run (with offload=True the components wait on the CPU in between)."""
        return self._device

    def staged_parts(self) -> tuple:
        return (self.text, self.denoiser, self.decoder)

    @property
    def text_encoder(self):
        """The loaded T5, or None while it is not in memory (staged)."""
        return self.text.module

    @property
    def text_encoder_loader(self):
        return self.text.loader

    # ---------------------------------------------------------------- stage 1: text
    def _t5(self, t5, texts, max_length: int):
        return t5_states(t5, self.tokenizer, texts, max_length, self.device)

    @torch.no_grad()
    def encode_prompt(self, prompt, negative_prompt="", *, max_sequence_length: int | None = None,
                      guided: bool = True, num_images_per_prompt: int = 1) -> PromptEmbeds:
        """T5 states of the prompts and of the unconditional branch (see `PixArtSampling.uncond`)."""
        prompts = check_prompts(prompt)
        check_count(num_images_per_prompt, "num_images_per_prompt")
        max_sequence_length = check_max_sequence_length(max_sequence_length)
        negatives = check_negative_prompts(negative_prompt, len(prompts))       # None = "" (diffusers)
        L = self.transformer.config.model_max_length if max_sequence_length is None else max_sequence_length
        null_caption = guided and self.sampling.uncond == "null_caption"
        if null_caption and (any(negatives) or L != self.transformer.config.model_max_length):
            raise ValueError("the stored null caption replaces the negative prompt, and has exactly "
                             f"{self.transformer.config.model_max_length} tokens: pass negative_prompt='' and "
                             "max_sequence_length=None, or sample with uncond='negative_prompt'")
        null = self.transformer.y_embedder.null_caption().to(self.device) if null_caption else None   # raises if not stored
        with self.text.use() as t5:                          # staged: loaded here, freed after unless kept
            cond, cond_mask = self._t5(t5, prompts, L)
            uncond = uncond_mask = None
            if null_caption:
                uncond = null[None].expand(len(prompts), -1, -1)
                uncond_mask = cond_mask                      # the official quirk: the prompt's mask
            elif guided:
                uncond, uncond_mask = self._t5(t5, negatives, L)
        return PromptEmbeds(cond, cond_mask, uncond=uncond, uncond_mask=uncond_mask).repeat(num_images_per_prompt)

    # ---------------------------------------------------------------- the call
    def generation_size(self, height, width, use_resolution_binning: bool = True) -> tuple[int, int]:
        """The (height, width) the transformer generates at: the nearest bucket, or the asked size."""
        side = self.transformer.config.input_size * self.vae.config.downsample_factor
        height, width = side if height is None else height, side if width is None else width
        check_size(height, width)
        if check_flag(use_resolution_binning, "use_resolution_binning"):
            if side not in SIDES:
                raise ValueError(f"no aspect-ratio bins for a {side}-px model: use use_resolution_binning=False")
            return classify_height_width_bin(height, width, inference_bins(side))
        step = self.vae.config.downsample_factor * self.transformer.config.patch_size
        return check_size(height, width, step, "VAE x patch, without resolution binning")

    def _denoise(self, model: PixArt, e: PromptEmbeds, H: int, W: int, generator, guidance_scale: float, steps: int,
                 progress: bool, windows=None) -> torch.Tensor:
        """Stage 2: noise -> the sampler's run with the (guided, maybe windowed) transformer -> latents (B, C, h, w)."""
        device, guided = self.device, guidance_scale > 1
        dtype = next(model.parameters()).dtype
        B, C, f = e.cond.shape[0], model.config.in_channels, self.vae.config.downsample_factor
        x_T = initial_noise((B, C, H // f, W // f), generator, device)                    # (B, C, h, w)
        # one batch [uncond | cond] when guided, as diffusers' pipelines and the official DPMS wrapper
        y, mask, _ = e.batched(uncond_first=True)                                           # (2B, L, C_cap), (2B, L)
        y = y.to(dtype)

        def forward(x, t):     # x: the latent, or k stacked windows of it (then the text is tiled k times)
            micro = {}
            if model.config.micro_condition:   # α-1024: the size and aspect ratio of what the model sees
                h, w = x.shape[-2] * f, x.shape[-1] * f
                micro = dict(img_hw=torch.tensor([[float(h), float(w)]], device=device, dtype=dtype),
                             aspect_ratio=torch.tensor([[h / w]], device=device, dtype=dtype))
            n = x.shape[0]
            return model(x.to(dtype), t, tile_batch(y, n), tile_batch(mask, n), **micro).float()
        network = forward if windows is None else windows.wrap(forward, (H // f, W // f))
        model_fn = guided_model_fn(network, guidance_scale, uncond_first=True) if guided else network
        hint = precision_hint(model, "the PixArt transformer", "dtype")
        model_fn = finite_steps(model_fn, "denoising", hint)
        latents = self.sampling.sampler.run(model_fn, x_T, steps, learn_sigma=model.config.pred_sigma,
                                            progress=progress)                             # (B, C, h, w)
        check_finite(latents, "denoising", hint)
        # the windows' counts, kept as numbers: the windowed network would keep the transformer alive
        self._window_stats = {} if windows is None else network.stats(H // f, W // f)
        return latents

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt="", height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = 4.5, generator: torch.Generator | None = None,
                 max_sequence_length: int | None = None, num_images_per_prompt: int = 1,
                 use_resolution_binning: bool = True, output_type: str = "pil",
                 prompt_embeds: PromptEmbeds | None = None, decode_tiling: bool | None = None,
                 window: int | tuple[int, int] | None = None, window_overlap: int | None = None,
                 window_blend: str = "linear", windows_per_call: int = 1, progress: bool = True):
        """Images for `prompt` (str or list). output_type "pil" -> list of PIL images, "np" -> (B, height,
        width, 3) / "pt" -> (B, 3, height, width) in [0, 1], "latent" -> the denoised latents at the
        generation size.
        `prompt_embeds` (from `encode_prompt`) skips stage 1. `decode_tiling` None = automatic
        (above TILE_ABOVE_PIXELS).
        `window` (pixels, int or (height, width), a multiple of 16; None = the whole latent at once):
        sliding-window denoising with windows of that size overlapping by `window_overlap` pixels (None:
        a quarter of the window), blended with `window_blend` ("uniform" | "linear" | "gaussian"),
        `windows_per_call` windows per transformer call (`minidit/windows.py`); then height x width is
        generated as asked (a multiple of 16), without resolution binning.
        Defaults for height/width: the training resolution (input_size x 8). guidance_scale in [0, 1]: no
        guidance (diffusers' convention); negative, NaN or inf, steps outside 1..1000, a size that is not a
        positive integer, a generator that is not a torch.Generator: refused before any compute
        (`pipelines/checks.py`). A stage that produces NaN/inf raises NonFiniteError naming it."""
        check_output_type(output_type)
        check_steps(num_inference_steps)
        guidance_scale = check_guidance(guidance_scale)
        check_generator(generator)
        check_count(num_images_per_prompt, "num_images_per_prompt")
        check_max_sequence_length(max_sequence_length)
        if decode_tiling is not None:
            check_flag(decode_tiling, "decode_tiling")
        check_prompt_input(prompt, negative_prompt, prompt_embeds)
        config, device, guided = self.transformer.config, self.device, guidance_scale > 1
        side = config.input_size * self.vae.config.downsample_factor
        asked = (side if height is None else height, side if width is None else width)
        f, p = self.vae.config.downsample_factor, config.patch_size
        if window is not None:             # windows: the asked size itself, no bucket (see the docstring)
            use_resolution_binning = False
        H, W = self.generation_size(height, width, use_resolution_binning)
        windows = pipeline_windows(window, window_overlap, window_blend, windows_per_call, factor=f, patch=p,
                                   size=(H, W))
        stats = self.last_run_stats = {"device": str(device), "memory": memory_method(device)}

        with stage(stats, "text", device) as record:
            if prompt_embeds is None:
                loading = self.text.module is None                # staged: T5 lives for this stage only
                prompt_embeds = self.encode_prompt(prompt, negative_prompt, max_sequence_length=max_sequence_length,
                                                   guided=guided, num_images_per_prompt=num_images_per_prompt)
                if loading:
                    record["t5_load_s"] = round(self.text.last_load_seconds, 2)
            e = prompt_embeds
            if guided and not e.guided:
                raise ValueError("prompt_embeds has no unconditional half: encode with guided=True")

        with stage(stats, "denoise", device) as record, self.denoising(record) as model:
            # a method, so that no local of this frame still holds the transformer when the stage frees it
            latents = self._denoise(model, e, H, W, generator, guidance_scale, num_inference_steps, progress, windows)
            del model
            record.update(size=f"{H}x{W}", steps=num_inference_steps, **self._window_stats)
        if output_type == "latent":
            return latents

        with stage(stats, "decode", device) as record, self.decoder.use() as vae:
            tiled = H * W > TILE_ABOVE_PIXELS if decode_tiling is None else decode_tiling   # checked above
            tile = dict(tile=DECODE_TILE, overlap=DECODE_OVERLAP) if tiled else {}
            image = decode_latents(vae, latents, **tile)                              # (B, 3, H, W)
            if use_resolution_binning:
                image = resize_and_crop(image.float(), *asked)                             # (B, 3, height, width)
            image = to_output(image, output_type)
            record["tiled"] = tiled
        return image
