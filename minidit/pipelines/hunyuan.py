"""Hunyuan-DiT v1.1 / v1.2, prompt -> image: BERT-CLIP + mT5 -> Hunyuan-DiT (v-prediction DDPM) -> SDXL VAE.

    pipe = HunyuanPipeline.from_pretrained("HunyuanDiT-v1.2-Diffusers")       # a diffusers folder
    pipe = HunyuanPipeline.from_pretrained("ckpts")                          # or the original ckpts/t2i/
    images = pipe("一只可爱的猫", generator=torch.Generator().manual_seed(42))

The run, in stages (each timed, its peak memory in `pipe.last_run_stats`):
  1. text     the prompt(s) and the negative prompt -> `HunyuanTextEncoders` (pipelines/hunyuan_text.py):
              BERT states (B, 77, 1024) + mask and mT5 states (B, 256, 2048) + mask, for both branches.
  2. denoise  x_T = randn(B, 4, H/8, W/8) from `generator` -> N steps of the sampler; each step runs the
              transformer once on [uncond | cond], keeps the first 4 of its 8 output channels (the
              v-prediction; the other 4 are the learned sigma, unused at sampling), guides
              (uncond + s (cond - uncond)), optionally rescales (`guidance_rescale`) -> latents.
  3. decode   latents / 0.13025 -> the SDXL VAE (sdxl-vae-fp16-fix) -> image.
  With `from_pretrained(..., keep_transformer=False)` the transformer lives for stage 2 only: a meta skeleton
  (its config) until then, loaded after BERT and mT5 are freed, freed before the decode.

Sampling (`HunyuanSampling`): v-prediction, scaled-linear betas 0.00085 -> 0.02 (v1.2) or -> 0.03 (v1.0 /
v1.1: the official `--beta-end 0.03` that goes with `--use-style-cond`), 1000 training steps.

  follow="official" (`official_sampling`, Tencent/HunyuanDiT `sample_t2i.py` + `hydit/inference.py`):
      DDPMScheduler(steps_offset=1, clip_sample=False) for 100 steps, CFG 6.0 (or "ddim" / "dpmms" =
      DPM-Solver++(2M), the official --sampler choices); the default negative prompt is the official
      Chinese one (`hunyuan_text.NEGATIVE_PROMPT`; an empty negative prompt also means it, as in
      `End2End.predict`); the prompt is stripped; height and width are floored to multiples of 16 and
      NOT snapped (resolution snapping to the official STANDARD_SHAPE list is the TensorRT path:
      `use_resolution_binning=True` turns it on); RoPE on the official grid and, for v1.0/1.1, the size
      condition image_meta_size = [src_h, src_w, target_W, target_H, 0, 0] (src = `original_size`,
      the official --size-cond 1024 1024). v1.2-Distilled: the same with 25 steps (the README's example
      for the distilled weights), chosen when the folder's name or `load_key` says "distill".
  follow="diffusers" (`diffusers_sampling`): exactly HunyuanDiTPipeline on the same folder: its
      scheduler_config.json, 50 steps, CFG 5.0, negative prompt "", no strip, binning on (diffusers'
      own STANDARD_SHAPE table) — and diffusers' two deviations from the official code, reproduced on
      purpose: (1) the RoPE grid: since diffusers 0.32 `get_2d_rotary_pos_embed` spaces the positions
      as linspace(start, stop * (n-1)/n, n), squeezed towards 0 on the shorter side of a non-square
      image (`embed.rope_positions`, convention "diffusers"); square images are unaffected; (2) the
      v1.0/1.1 size condition with the target as (H, W) instead of (W, H).

Precision: on CUDA the transformer runs in float16 (the official `.half()`), mT5 in guarded float16,
BERT and the VAE in float32 (official); on the CPU everything is float32. The sampler runs in float32.

diffusers' one more difference, not reproduced: with several prompts AND num_images_per_prompt > 1 it
repeats the states per prompt but tiles the masks (`mask.repeat(n, 1)`), pairing prompts with other
prompts' masks; minidit keeps each prompt's mask with it (the official code takes one prompt only).

Shape legend: B prompts x images per prompt, C = 4 latent channels, h w = H/8 W/8, p patch (2).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from minidit.embed import get_2d_rope
from minidit.errors import InputError
from minidit.guidance import cfg, rescale_cfg
from minidit.hunyuan import HunyuanDiT
from minidit.samplers import Sampler
from minidit.scheduler_config import sampler_from_scheduler_config
from minidit.vae import AutoencoderKL
from minidit.windows import tile_batch
from weights_loader import MissingPartError, PipelineFolder, load_hunyuan, load_vae
from weights_loader.hunyuan import LOAD_KEYS, read_hunyuan_config
from weights_loader.io import build_on_meta
from .checks import (check_count, check_finite, check_flag, check_generator, check_guidance, check_guidance_rescale,
                     check_int, check_negative_prompts, check_prompts, check_steps, finite_steps, precision_hint)
from .common import (Staged, StagedPipeline, check_output_type, decode_tiled_if_large, initial_noise, offload_to, pipeline_windows,
                     staged_or_loaded, to_output)
from .hunyuan_text import NEGATIVE_PROMPT, HunyuanTextEncoders
from .memory import memory_method, stage

MISSING_PARTS = ("A Hunyuan-DiT folder: `huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers --local-dir "
                 "DIR` (diffusers layout; also HunyuanDiT-v1.2-Diffusers-Distilled, HunyuanDiT-Diffusers for v1.1), or "
                 "the original `huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2 --local-dir ckpts` (ckpts/t2i/).")
# the original repository's folders inside t2i/ (hunyuan_text.ORIGINAL_FOLDERS for the text stack)
ORIGINAL_PARTS = ("model", "clip_text_encoder", "tokenizer", "mt5", "sdxl-vae-fp16-fix")
ALIGN = 16                       # official and diffusers: height, width floored to multiples of 16 (VAE 8 x patch 2)

# (width, height) per aspect ratio 1:1, 4:3, 3:4, 16:9, 9:16. Official: hydit/inference.py STANDARD_SHAPE
# (the TensorRT path's sizes); diffusers' table adds 1024x768, 1152x864 and their transposes.
STANDARD_RATIOS = (1.0, 4.0 / 3.0, 3.0 / 4.0, 16.0 / 9.0, 9.0 / 16.0)
STANDARD_SHAPES = {
    "official": (((1024, 1024), (1280, 1280)), ((1280, 960),), ((960, 1280),), ((1280, 768),), ((768, 1280),)),
    "diffusers": (((1024, 1024), (1280, 1280)), ((1024, 768), (1152, 864), (1280, 960)),
                  ((768, 1024), (864, 1152), (960, 1280)), ((1280, 768),), ((768, 1280),)),
}

# hydit/constants.py SAMPLER_FACTORY, with the beta_end of the version (config.py --beta-end)
OFFICIAL_SCHEDULERS = {
    "ddpm": {"_class_name": "DDPMScheduler", "steps_offset": 1, "clip_sample": False},
    "ddim": {"_class_name": "DDIMScheduler", "steps_offset": 1, "clip_sample": False},
    "dpmms": {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 2, "algorithm_type": "dpmsolver++"},
}


def standard_shape(width: int, height: int, table: str = "official") -> tuple[int, int]:
    """The (width, height) of the standard shape nearest in aspect ratio, then in area (the first on
    a tie), as the official `get_standard_shape` / diffusers' `map_to_standard_shapes`."""
    ratio = width / height
    i = min(range(len(STANDARD_RATIOS)), key=lambda k: abs(STANDARD_RATIOS[k] - ratio))
    return min(STANDARD_SHAPES[table][i], key=lambda wh: abs(wh[0] * wh[1] - width * height))


@dataclass(frozen=True)
class HunyuanSampling:
    sampler: Sampler                          # v-prediction DDPM / DDIM / DPM-Solver++(2M) and its grid
    steps: int                                # the default number of steps
    guidance: float                           # the default CFG scale
    negative_prompt: str                      # used when the call gives none (or "")
    rope: str = "official"                    # embed.get_2d_rope convention: "official" | "diffusers"
    size_condition: str = "official"          # v1.0/1.1 target as (W, H) "official" | (H, W) "diffusers"
    resolution_binning: bool = False          # the call's default for use_resolution_binning
    standard_shapes: str = "official"         # which STANDARD_SHAPES table binning snaps to
    strip_prompt: bool = True                 # the official predict() strips the prompt


def official_scheduler_config(sampler: str = "ddpm", beta_end: float = 0.02) -> dict:
    """The scheduler the official code builds (a diffusers scheduler config, read by scheduler_config.py)."""
    if not isinstance(sampler, str) or sampler not in OFFICIAL_SCHEDULERS:
        raise InputError(f"sampler must be one of {', '.join(OFFICIAL_SCHEDULERS)} (the official --sampler), "
                         f"not {sampler!r}")
    return {**OFFICIAL_SCHEDULERS[sampler], "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": beta_end, "prediction_type": "v_prediction"}


def official_sampling(size_cond: bool, sampler: str = "ddpm", *, distilled: bool = False) -> HunyuanSampling:
    """The official defaults for a version: v1.0/1.1 (size_cond) beta_end 0.03, v1.2 0.02; 100 steps
    (25 for the distilled v1.2), CFG 6.0, the Chinese negative prompt."""
    config = official_scheduler_config(sampler, 0.03 if size_cond else 0.02)
    return HunyuanSampling(sampler_from_scheduler_config(config), steps=25 if distilled else 100, guidance=6.0,
                           negative_prompt=NEGATIVE_PROMPT)


def diffusers_sampling(scheduler_config: dict) -> HunyuanSampling:
    """What HunyuanDiTPipeline does with a folder's scheduler (module docstring)."""
    sampler = sampler_from_scheduler_config(scheduler_config)
    if sampler.prediction_type != "v_prediction":
        raise ValueError(f"scheduler {scheduler_config.get('_class_name')} predicts {sampler.prediction_type!r}: "
                         "Hunyuan-DiT is a v-prediction model (its folders ship a v_prediction DDPMScheduler)")
    return HunyuanSampling(sampler, steps=50, guidance=5.0, negative_prompt="", rope="diffusers",
                           size_condition="diffusers", resolution_binning=True, standard_shapes="diffusers",
                           strip_prompt=False)


def check_original_size(value) -> tuple[int, int]:
    """original_size: v1.0/1.1's (src_h, src_w) condition, a pair of positive integers."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InputError(f"original_size must be a pair (height, width) of positive integers, got {value!r}")
    return check_int(value[0], "original_size[0]", minimum=1), check_int(value[1], "original_size[1]", minimum=1)


def original_t2i(folder) -> Path | None:
    """The original repository's t2i/ folder: `folder` itself or its t2i/ (with model/ inside), else None."""
    for candidate in (Path(folder), Path(folder) / "t2i"):
        if (candidate / "model").is_dir():
            return candidate
    return None


class HunyuanPipeline(StagedPipeline):
    """pipe(prompt, negative_prompt=None, height=1024, width=1024, num_inference_steps=None,
    guidance_scale=None, generator=None) -> list[PIL.Image]; None = the sampling's defaults."""

    def __init__(self, transformer: HunyuanDiT, vae: AutoencoderKL, text: HunyuanTextEncoders,
                 sampling: HunyuanSampling, *, offload: bool = False, device=None, transformer_loader=None,
                 keep_transformer: bool = True):
        """`offload=True`: the transformer, the VAE and the text encoders wait on the CPU and each is moved
        to `device` for its stage only (the text encoders are freed after theirs unless kept).
        `transformer_loader`: then `transformer` is a skeleton on the meta device (its config, no weights),
        the real one is loaded by `transformer_loader()` for the denoising and, with keep_transformer=False,
        freed before the VAE decodes (`StagedPipeline.stage_transformer`)."""
        check_flag(offload, "offload")
        if device is None:
            device = "cpu" if transformer_loader is not None else next(transformer.parameters()).device
        self._device = torch.device(device)
        self.stage_transformer(transformer, transformer_loader, keep=keep_transformer, offload=offload, device=device,
                               what="Hunyuan-DiT transformer")
        self.decoder = Staged(vae.eval(), what="VAE")
        self.text, self.sampling = text, sampling
        if offload:
            offload_to(self._device, self.decoder, text.bert, text.mt5)
        self.last_run_stats: dict = {}

    def staged_parts(self) -> tuple:
        return (self.text.bert, self.text.mt5, self.denoiser, self.decoder)

    @classmethod
    def from_pretrained(cls, folder, *, follow: str = "official", sampling: HunyuanSampling | None = None,
                        sampler: str = "ddpm", load_key: str | None = None, dtype=None, text_dtype=None,
                        vae_dtype=torch.float32, device="cpu", keep_text_encoders: bool = False,
                        keep_transformer: bool = True, offload: bool = False) -> "HunyuanPipeline":
        """A diffusers HunyuanDiTPipeline root (model_index.json) or the original repository's layout
        (`ckpts/` or `ckpts/t2i/`: model/pytorch_model_<load_key>.pt, clip_text_encoder/, tokenizer/, mt5/,
        sdxl-vae-fp16-fix/; load_key None = "ema", or "distill" for a folder named *distill*).
        follow="official" | "diffusers" (module docstring); `sampler` ("ddpm" | "ddim" | "dpmms") picks
        the official sampler; `sampling=` replaces either. Dtypes: see "Precision". `offload=True`: see
        `HunyuanPipeline(...)`.

        Memory. BERT and mT5 are loaded for the text stage and freed after it (keep_text_encoders=False).
        keep_transformer=False: the transformer is not loaded here either, only its config read (a diffusers
        folder's transformer/config.json; the original `.pt`'s keys and shapes, memory-mapped: a torch.save
        zip archive's index only, a legacy pickle read whole once and freed); it is loaded when the denoising
        starts and freed when it ends (before the VAE decodes), so the run peaks at its largest stage, not at
        the sum of the models. Each call then reads it from disk again."""
        if not isinstance(follow, str) or follow not in ("official", "diffusers"):
            raise InputError(f"follow must be 'official' or 'diffusers', not {follow!r}")
        official_scheduler_config(sampler)                           # an unknown sampler fails before loading
        if load_key is not None and (not isinstance(load_key, str) or load_key not in LOAD_KEYS):
            raise InputError(f"load_key must be None or one of {LOAD_KEYS} (the official --load-key), not {load_key!r}")
        if sampling is not None and not isinstance(sampling, HunyuanSampling):
            raise InputError(f"sampling must be a HunyuanSampling or None, not {type(sampling).__name__}")
        check_flag(keep_text_encoders, "keep_text_encoders")
        cuda = torch.device(device).type == "cuda"
        run_on, device = device, "cpu" if check_flag(offload, "offload") else device    # offloaded: load to the CPU
        if dtype is None:
            dtype = torch.float16 if cuda else torch.float32
        distilled = "distill" in Path(folder).resolve().name.lower() or load_key == "distill"
        t2i = None if (Path(folder) / "model_index.json").is_file() else original_t2i(folder)
        if t2i is None:                                              # the diffusers layout
            parts = PipelineFolder(folder, hint=MISSING_PARTS)
            parts.pipeline_class(("HunyuanDiTPipeline",))             # model_index.json, read by the shared reader
            parts.require("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
            transformer_dir = parts.component("transformer")
            transformer, transformer_loader = staged_or_loaded(
                lambda: load_hunyuan(transformer_dir, dtype=dtype, device=device),
                lambda: build_on_meta(HunyuanDiT, read_hunyuan_config(transformer_dir)), keep_transformer)
            vae = load_vae(parts.component("vae"), dtype=vae_dtype, device=device)
            text = HunyuanTextEncoders.from_pretrained(folder, mt5_dtype=text_dtype, device=device,
                                                       keep=keep_text_encoders)
            scheduler = parts.scheduler_config()
            if scheduler is None and sampling is None and follow == "diffusers":
                warnings.warn(f"no scheduler/scheduler_config.json in {folder}: sampling with the official DDPM "
                              "scheduler of the version (official_scheduler_config)", stacklevel=2)
        else:
            missing = [f"{name}/" for name in ORIGINAL_PARTS if not (t2i / name).is_dir()]
            if missing:                                              # one error for every part, before any load
                raise MissingPartError(f"no {', '.join(missing)} in {t2i}. {MISSING_PARTS}")
            key = ("distill" if distilled else "ema") if load_key is None else load_key
            transformer, transformer_loader = staged_or_loaded(
                lambda: load_hunyuan(t2i, load_key=key, dtype=dtype, device=device),
                lambda: build_on_meta(HunyuanDiT, read_hunyuan_config(t2i, load_key=key)), keep_transformer)
            vae = load_vae(t2i / "sdxl-vae-fp16-fix", dtype=vae_dtype, device=device)
            text = HunyuanTextEncoders.from_original(t2i, mt5_dtype=text_dtype, device=device, keep=keep_text_encoders)
            scheduler = None
        size_cond = transformer.config.size_cond
        if sampling is None:
            if scheduler is None:
                scheduler = official_scheduler_config("ddpm", 0.03 if size_cond else 0.02)
            sampling = (official_sampling(size_cond, sampler, distilled=distilled) if follow == "official" else
                        diffusers_sampling(scheduler))
        return cls(transformer, vae, text, sampling, offload=offload, device=run_on,
                   transformer_loader=transformer_loader, keep_transformer=keep_transformer)

    @property
    def device(self):
        """Where the stages run (with offload the components wait on the CPU in between)."""
        return self._device

    def generation_size(self, height: int, width: int, use_resolution_binning: bool | None = None) -> tuple[int, int]:
        """(height, width) the image is generated at: floored to multiples of 16 (what the official code
        and diffusers both do, so 1000 x 700 is generated at 992 x 688, reported in last_run_stats), then,
        with binning, snapped to the nearest standard shape (diffusers keeps a size already in its table).
        height / width must be integers of at least 16 (InputError otherwise)."""
        s = self.sampling
        binning = s.resolution_binning if use_resolution_binning is None else \
            check_flag(use_resolution_binning, "use_resolution_binning")
        for name, value in (("height", height), ("width", width)):
            check_int(value, name, minimum=ALIGN, hint=f"Hunyuan-DiT floors sizes to multiples of {ALIGN} "
                      "(VAE factor 8 x patch 2)")
        H, W = int(height) // ALIGN * ALIGN, int(width) // ALIGN * ALIGN
        if binning:
            table = STANDARD_SHAPES[s.standard_shapes]
            if s.standard_shapes == "official" or (W, H) not in [wh for row in table for wh in row]:
                W, H = standard_shape(W, H, s.standard_shapes)
        return H, W

    def size_inputs(self, H: int, W: int, original_size, batch: int) -> dict:
        """v1.0/1.1's image_meta_size (batch, 6) and style (batch,) (module docstring); {} for v1.2."""
        if not self.transformer.config.size_cond:
            return {}
        target = (W, H) if self.sampling.size_condition == "official" else (H, W)
        meta = torch.tensor([[*original_size, *target, 0, 0]] * batch, dtype=torch.float32, device=self.device)
        return dict(image_meta_size=meta, style=torch.zeros(batch, dtype=torch.long, device=self.device))

    def _negatives(self, negative_prompt, n: int) -> list[str]:
        """One negative prompt per prompt (`checks.check_negative_prompts`: a string for all, a list with
        one per prompt, None). None and "" both mean the sampling's default negative prompt: the official
        `End2End.predict` replaces a None or "" negative prompt by its Chinese default; diffusers' default
        is "" itself, so for follow="diffusers" nothing changes."""
        default = self.sampling.negative_prompt
        return [default if neg == "" else neg for neg in check_negative_prompts(negative_prompt, n)]

    def _denoise(self, model: HunyuanDiT, bert, mt5, h: int, w: int, generator, guidance: float,
                 guidance_rescale: float, steps: int, original_size, progress: bool, windows, record: dict):
        """Stage 2: noise (B, C, h, w) -> the sampler's run with the guided (maybe windowed) transformer ->
        latents; the windows' counts go into `record`."""
        s, device, guided = self.sampling, self.device, guidance > 1
        f, p = self.vae.config.downsample_factor, model.config.patch_size
        dtype = next(model.parameters()).dtype
        C, B = model.config.in_channels, bert.cond.shape[0]
        x_T = initial_noise((B, C, h, w), generator, device)                                # (B, C, h, w)
        states, mask, _ = bert.batched(uncond_first=True)                                   # (2B, 77, 1024)
        states_t5, mask_t5, _ = mt5.batched(uncond_first=True)                              # (2B, 256, 2048)
        text = dict(encoder_hidden_states=states.to(dtype), text_embedding_mask=mask,
                    encoder_hidden_states_t5=states_t5.to(dtype), text_embedding_mask_t5=mask_t5)
        ropes = {}                           # per grid: the whole latent's, or a window's

        def network(x, t):                   # x: the latent, or k stacked windows of it (the text tiled k times)
            gh, gw = x.shape[-2:]
            if (gh, gw) not in ropes:
                ropes[gh, gw] = get_2d_rope(model.config.head_dim, gh // p, gw // p, convention=s.rope)
            cos, sin = ropes[gh, gw]
            n = x.shape[0]
            inputs = {k: tile_batch(v, n) for k, v in text.items()}
            size = self.size_inputs(gh * f, gw * f, original_size, n)      # the size of what the model sees
            return model(x.to(dtype), t, **inputs, **size, cos_cis_img=cos, sin_cis_img=sin)
        if windows is not None:
            network = windows.wrap(network, (h, w))

        def v_prediction(x, t):              # the network's first C channels: v; the learned sigma is dropped
            return network(x, t)[:, :C].float()

        def model_fn(x, t):
            if not guided:
                return v_prediction(x, t)
            uncond, cond = v_prediction(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
            v = cfg(cond, uncond, guidance)
            return rescale_cfg(v, cond, guidance_rescale) if guidance_rescale > 0 else v
        hint = precision_hint(model, "the Hunyuan-DiT transformer", "dtype")
        latents = s.sampler.run(finite_steps(model_fn, "denoising", hint), x_T, steps, generator=generator,
                                progress=progress)                                          # (B, C, h, w)
        check_finite(latents, "denoising", hint)
        if windows is not None:
            record.update(network.stats(h, w))
        return latents

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt=None, height: int = 1024, width: int = 1024,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, num_images_per_prompt: int = 1,
                 guidance_rescale: float = 0.0, original_size: tuple[int, int] = (1024, 1024),
                 use_resolution_binning: bool | None = None, output_type: str = "pil",
                 window: int | tuple[int, int] | None = None, window_overlap: int | None = None,
                 window_blend: str = "linear", windows_per_call: int = 1, progress: bool = True):
        """Images for `prompt` (str or list; Chinese, English or both). output_type "pil" | "np" | "pt" |
        "latent". None = the sampling's default (steps, guidance, binning, negative prompt).
        guidance_scale in [0, 1]: no guidance (diffusers' `guidance_scale > 1` convention); negative, NaN or
        inf guidance, steps outside 1..1000, height / width that are not integers >= 16 (they are floored to
        multiples of 16, as the official code and diffusers do), guidance_rescale outside [0, 1] (0: plain
        CFG), a generator that is not a torch.Generator, flags that are not bools: refused before any
        compute (`pipelines/checks.py`). original_size: v1.0/1.1's (src_h, src_w) condition, positive
        integers. A stage that produces NaN/inf (BERT, mT5, a denoising step, the VAE decode) raises
        NonFiniteError naming it.
        `window` (pixels; None = the whole latent at once), `window_overlap`, `window_blend`,
        `windows_per_call`: sliding-window denoising (`minidit/windows.py`), as in PixArtPipeline; each
        window gets the RoPE of its own grid and (v1.0/1.1) its own size as the target-size condition, as
        a window-sized image would; the size is floored to multiples of 16 and not binned."""
        check_output_type(output_type)
        s, device = self.sampling, self.device
        steps = check_steps(s.steps if num_inference_steps is None else num_inference_steps)
        guidance = check_guidance(s.guidance if guidance_scale is None else guidance_scale)
        guidance_rescale = check_guidance_rescale(guidance_rescale)
        check_generator(generator)
        check_count(num_images_per_prompt, "num_images_per_prompt")
        original_size = check_original_size(original_size)
        guided = guidance > 1
        if s.sampler.variance == "learned_range":
            raise ValueError("a learned_range scheduler: the Hunyuan pipelines sample with the v-prediction "
                             "only (the learned sigma is cut off before the step, official and diffusers)")
        prompts = check_prompts(prompt)
        prompts = [p.strip() for p in prompts] if s.strip_prompt else prompts
        negatives = self._negatives(negative_prompt, len(prompts))    # checked even when unguided
        H, W = self.generation_size(height, width, False if window is not None else use_resolution_binning)
        f, p = self.vae.config.downsample_factor, self.transformer.config.patch_size
        windows = pipeline_windows(window, window_overlap, window_blend, windows_per_call, factor=f, patch=p,
                                   size=(H, W))
        stats = self.last_run_stats = {"device": str(device), "memory": memory_method(device)}
        with stage(stats, "text", device):
            bert, mt5 = self.text.encode(prompts, negatives if guided else None,
                                         num_images_per_prompt=num_images_per_prompt, device=device)

        with stage(stats, "denoise", device) as record, self.denoising(record) as model:
            # a method, so that no local of this frame still holds the transformer when the stage frees it
            latents = self._denoise(model, bert, mt5, H // f, W // f, generator, guidance, guidance_rescale, steps,
                                    original_size, progress, windows, record)
            del model
            record.update(size=f"{H}x{W}", steps=steps, sampler=s.sampler.name)
        if output_type == "latent":
            return latents
        with stage(stats, "decode", device) as record, self.decoder.use() as vae:
            image, record["tiled"] = decode_tiled_if_large(vae, latents)
            image = to_output(image, output_type)
        return image
