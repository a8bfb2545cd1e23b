"""Prompt -> video frames: T5-XXL -> a video DiT + its sampler -> the VAE, frame by frame.

    pipe = LattePipeline.from_pretrained("Latte-1")                    # `huggingface-cli download maxin-cn/Latte-1`
    video = pipe("a cat wearing sunglasses at the pool", generator=torch.Generator().manual_seed(0))[0]
    save_video(video, "clip.gif")                                      # minidit/pipelines/video_output.py

The run, in stages (each timed, its peak memory in `pipe.last_run_stats`, as the image pipelines):
  1. text     the prompt, lower-cased and stripped, -> 120 T5 tokens -> T5-XXL states; the same for the
              negative prompt ("" by default). T5 is loaded for this stage and freed after it
              (keep_text_encoder=False, the default of `from_pretrained`), as in `pipelines/pixart.py`,
              whose `t5_states` this stage calls.
  2. denoise  noise (B, 4, F, H/8, W/8) from `generator` -> the family's sampler (Latte-1: 50 DDIM steps),
              each one transformer call on [uncond | cond] (classifier-free guidance, 7.5) -> latents.
  3. decode   latents / scaling_factor -> the 2-D VAE on `decode_chunk_size` frames at a time (14, as
              diffusers) -> frames in [-1, 1] -> "pil": one list of F PIL images per video.

The family adapter. What differs between video DiTs is a `VideoFamily`: how the T5 states become the
transformer's text input (`text_input`: Latte's mask_feature; Open-Sora's stored null caption as the
unconditional branch, `null_caption`), what reaches T5 (`prompts`, `lower_case`, `caption_length`), how
the transformer is called (`forward`, given the pixel frame count and size: STDiT3 takes fps, height and
width, and its output is negated there), which frame counts and sizes it takes (`check_frames`,
`default_size`, `size_multiple`), the latent shape (`latent_shape`: a temporal VAE has fewer latent
frames), the sampler for a size (`sampler`: Open-Sora 1.2's shift) and its per-step noise (`noise_fn`:
Open-Sora 1.0's null half carried through IDDPM), whether the output carries a learned variance
(`learn_sigma`), and how latents become frames (`decode`, per frame with the 2-D VAE by default).
`VideoPipeline` does the rest (staging, noise, guidance, the sampler loop, output types), and a
family's pipeline is `VideoPipeline` with its adapter and a constructor that reads its files: Latte-1
below, Open-Sora 1.0 / 1.2 in `pipelines/opensora.py`.

Latte-1 (`LATTE`), exactly what diffusers' `LattePipeline` (and the official `sample/pipeline_latte.py`)
computes from the same folder (tests/test_pipeline_latte.py):
  * mask_feature: no caption mask reaches the transformer. With ONE video in the batch the T5 states
    are cut to the prompt's real tokens (and the negative prompt's states to the same count); with
    several, the prompt's padding rows are zeroed (not dropped) and the negative prompt's kept whole.
    So the same prompt gives a slightly different video alone and in a batch: that is Latte's own
    behaviour, reproduced, not a minidit choice. (With several prompts and num_videos_per_prompt > 1,
    diffusers pairs the masks with the wrong prompts, diffusers issue #13595; minidit pairs them right.)
  * learned sigma: the transformer outputs [eps | v]; guidance is on eps and the v half is dropped
    (the official pipeline's rule: out_channels = 2 x latent channels). diffusers drops it only when
    the scheduler config has no `variance_type` entry (a DDIM config holding "learned_range" makes its
    DDIM step fail on the 8 channels); minidit always drops it, as the official code.
  * frames: 16 (Latte-1's temporal position table) or 1 (an image), `LatteConfig.check_frames`.
  * prompts are lower-cased and stripped, diffusers' `clean_caption=False` (see `pipelines/pixart.py`).

Shape legend: B videos, C latent channels, F frames, h w = H/8 W/8, L caption tokens.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from minidit.errors import InputError
from minidit.latte import CAPTION_TOKENS, Latte
from minidit.samplers import Sampler
from minidit.scheduler_config import sampler_from_scheduler_config
from minidit.vae import AutoencoderKL, decode_latents, to_pil
from weights_loader import PipelineFolder, load_latte, load_t5, load_t5_tokenizer, load_vae
from weights_loader.latte import PIPELINE_CLASS
from .checks import (check_count, check_finite, check_flag, check_generator, check_guidance, check_int,
                     check_negative_prompts, check_prompts, check_size, check_steps, finite_steps, precision_hint)
from .common import (PromptEmbeds, Staged, StagedPipeline, check_output_type, check_prompt_input, guided_model_fn,
                     initial_noise)
from .memory import memory_method, stage
from .pixart import default_dtypes, t5_states


class VideoFamily:
    """What a video DiT family does its own way; `VideoPipeline` calls these and nothing else of the model."""
    name = "video"
    caption_tokens = 120             # T5 tokens per prompt
    null_caption = False             # True: guide against the model's stored null caption, not a negative prompt
    lower_case = True                # prompts lower-cased and stripped before T5 (diffusers' clean_caption=False)

    def check_frames(self, transformer, frames: int) -> int:
        """The frame count, or an InputError saying which counts the model takes."""
        return check_int(frames, "num_frames", minimum=1)

    def learn_sigma(self, transformer) -> bool:
        """Whether the output is [eps | v] (the sampler then drops v)."""
        return False

    def caption_length(self, transformer) -> int:
        """T5 tokens per prompt."""
        return self.caption_tokens

    def prompts(self, prompts: list[str]) -> list[str]:
        """The prompts as the family's sampler sends them to T5 (default: unchanged)."""
        return prompts

    def text_input(self, transformer, e: PromptEmbeds, guided: bool) -> PromptEmbeds:
        """The T5 states and masks as the transformer takes them (default: unchanged); with
        `null_caption`, the unconditional branch is added here when guided."""
        return e

    def default_size(self, transformer, vae) -> tuple[int, int]:
        """(height, width) in pixels when the call gives none: the training size."""
        side = transformer.config.sample_size * vae.config.downsample_factor
        return side, side

    def size_multiple(self, transformer, vae) -> tuple[int, str]:
        """Pixel sizes must be multiples of this; and why."""
        return vae.config.downsample_factor * transformer.config.patch_size, "VAE x patch"

    def latent_shape(self, transformer, vae, B: int, F: int, H: int, W: int) -> tuple:
        """The noise's shape (B, C, F_latent, h, w) for B videos of F frames, H x W pixels."""
        f = vae.config.downsample_factor
        return B, vae.config.z_channels, F, H // f, W // f

    def sampler(self, sampler: Sampler, F: int, H: int, W: int) -> Sampler:
        """The sampler for this video size (default: the pipeline's, whatever the size)."""
        return sampler

    def noise_fn(self, generator, guided: bool):
        """The sampler's per-step noise (None: drawn from `generator` for the B videos)."""
        return None

    def forward(self, transformer, x, t, y, mask, *, num_frames: int, height: int, width: int):
        """One transformer call: x (N, C, F, h, w), t (N,), y (N, L, C_cap), mask (N, L) or None;
        num_frames, height, width: the pixel video's (conditions some models take)."""
        raise NotImplementedError

    def decode(self, vae: AutoencoderKL, latents, chunk: int, num_frames: int | None = None):
        """Latents (B, C, F, h, w) -> frames (B, 3, F, H, W) in [-1, 1]: the 2-D VAE, `chunk` frames at a time."""
        B, C, F, h, w = latents.shape
        z = latents.transpose(1, 2).reshape(B * F, C, h, w)                    # (B*F, C, h, w)
        frames = torch.cat([decode_latents(vae, z[i:i + chunk]) for i in range(0, B * F, chunk)])
        return frames.float().reshape(B, F, *frames.shape[1:]).transpose(1, 2)  # (B, 3, F, H, W)


class LatteFamily(VideoFamily):
    """Latte-1: see "Latte-1" in the module docstring."""
    name = "latte"
    caption_tokens = CAPTION_TOKENS

    def check_frames(self, transformer: Latte, frames: int) -> int:
        try:
            return transformer.config.check_frames(frames)
        except ValueError as e:
            raise InputError(f"num_frames: {e}") from None

    def learn_sigma(self, transformer: Latte) -> bool:
        return transformer.config.pred_sigma

    def text_input(self, transformer: Latte, e: PromptEmbeds, guided: bool) -> PromptEmbeds:
        """mask_feature: one video -> cut both branches to the prompt's real tokens; several -> zero the
        prompt's padding rows. No mask goes on to the transformer. States without a mask (PromptEmbeds made by
        hand) go unchanged, as diffusers leaves prompt_embeds given by the caller."""
        if e.cond_mask is None:
            return PromptEmbeds(e.cond, uncond=e.uncond)
        if e.cond.shape[0] == 1:
            keep = int(e.cond_mask.sum())
            return PromptEmbeds(e.cond[:, :keep], uncond=None if e.uncond is None else e.uncond[:, :keep])
        cond = e.cond * e.cond_mask[:, :, None].to(e.cond.dtype)               # (B, L, C_cap)
        return PromptEmbeds(cond, uncond=e.uncond)

    def forward(self, transformer: Latte, x, t, y, mask, **size):
        return transformer(x, t, y, mask)


LATTE = LatteFamily()


def video_output(frames: torch.Tensor, output_type: str):
    """Frames (B, 3, F, H, W) in [-1, 1] -> "pil": B lists of F PIL images | "np": (B, F, H, W, 3) float32
    in [0, 1] | "pt": (B, F, 3, H, W) in [0, 1] (diffusers' VideoProcessor layouts)."""
    B, _, F, H, W = frames.shape
    per_frame = frames.transpose(1, 2).reshape(B * F, 3, H, W)                 # (B*F, 3, H, W)
    if output_type == "pil":
        images = to_pil(per_frame)
        return [images[b * F:(b + 1) * F] for b in range(B)]
    video = (per_frame / 2 + 0.5).clamp(0, 1).reshape(B, F, 3, H, W)
    if output_type == "np":
        return video.permute(0, 1, 3, 4, 2).cpu().numpy().astype(np.float32)
    return video


class VideoPipeline(StagedPipeline):
    """pipe(prompt, negative_prompt="", num_frames=16, height, width, num_inference_steps=50,
    guidance_scale=7.5, generator=None) -> a list (one per video) of lists of PIL frames."""

    def __init__(self, family: VideoFamily, transformer, vae: AutoencoderKL, tokenizer, sampler: Sampler, *,
                 text_encoder=None, text_encoder_loader=None, keep_text_encoder: bool = True, device=None):
        self.family, self.tokenizer, self.sampler = family, tokenizer, sampler
        self._device = torch.device(device if device is not None else next(transformer.parameters()).device)
        self.denoiser = Staged(transformer.eval(), what=f"{family.name} transformer")
        self.decoder = Staged(vae.eval(), what="VAE")
        self.text = Staged(text_encoder, text_encoder_loader, keep=keep_text_encoder, what="T5 text encoder")
        self.last_run_stats: dict = {}

    @property
    def device(self):
        return self._device

    def staged_parts(self) -> tuple:
        return (self.text, self.denoiser, self.decoder)

    @torch.no_grad()
    def encode_prompt(self, prompt, negative_prompt="", *, guided: bool = True,
                      num_videos_per_prompt: int = 1) -> PromptEmbeds:
        """T5 states and masks (B, L) of the prompts and, when guided, of the negative prompts."""
        family = self.family
        prompts = family.prompts(check_prompts(prompt))
        negatives = check_negative_prompts(negative_prompt, len(prompts))
        if family.null_caption and any(negatives):
            raise InputError(f"negative_prompt: {family.name} guides against its stored null caption "
                             "(y_embedder.y_embedding), as its official sampler; a negative prompt is not used. "
                             "Leave negative_prompt empty")
        L = family.caption_length(self.transformer)
        with self.text.use() as t5:                     # staged: loaded here, freed after unless kept
            cond, cond_mask = t5_states(t5, self.tokenizer, prompts, L, self.device, lower=family.lower_case)
            uncond = uncond_mask = None
            if guided and not family.null_caption:
                uncond, uncond_mask = t5_states(t5, self.tokenizer, negatives, L, self.device, lower=family.lower_case)
        return PromptEmbeds(cond, cond_mask, uncond=uncond, uncond_mask=uncond_mask).repeat(num_videos_per_prompt)

    def _denoise(self, model, e: PromptEmbeds, F: int, H: int, W: int, generator, guidance_scale: float,
                 steps: int, progress: bool):
        family, device, guided = self.family, self.device, guidance_scale > 1
        dtype = next(model.parameters()).dtype
        shape = family.latent_shape(model, self.vae, e.cond.shape[0], F, H, W)
        x_T = initial_noise(shape, generator, device)                          # (B, C, F', h, w)
        y, mask, _ = family.text_input(model, e, guided).batched(uncond_first=True)    # (2B, L, C_cap) [uncond | cond]
        y = y.to(dtype)

        def forward(x, t):
            return family.forward(model, x.to(dtype), t, y, mask, num_frames=F, height=H, width=W).float()
        model_fn = guided_model_fn(forward, guidance_scale, uncond_first=True) if guided else forward
        hint = precision_hint(model, f"the {family.name} transformer", "dtype")
        sampler = family.sampler(self.sampler, F, H, W)
        latents = sampler.run(finite_steps(model_fn, "denoising", hint), x_T, steps,
                              learn_sigma=family.learn_sigma(model), generator=generator,
                              noise_fn=family.noise_fn(generator, guided), progress=progress)
        return check_finite(latents, "denoising", hint)                        # (B, C, F, h, w)

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt="", num_frames: int = 16, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 generator: torch.Generator | None = None, num_videos_per_prompt: int = 1,
                 decode_chunk_size: int = 14, output_type: str = "pil", prompt_embeds: PromptEmbeds | None = None,
                 progress: bool = True):
        """Videos for `prompt` (str or list): "pil" -> a list of lists of F PIL frames, "np" -> (B, F, H, W, 3),
        "pt" -> (B, F, 3, H, W) in [0, 1], "latent" -> (B, C, F, h, w). height/width default to the model's
        training size; guidance_scale in [0, 1] runs unguided (diffusers' convention). Everything is checked
        before any compute (`pipelines/checks.py`); a stage that produces NaN/inf raises NonFiniteError."""
        check_output_type(output_type)
        check_steps(num_inference_steps)
        guidance_scale = check_guidance(guidance_scale)
        check_generator(generator)
        check_count(num_videos_per_prompt, "num_videos_per_prompt")
        check_count(decode_chunk_size, "decode_chunk_size")
        check_flag(progress, "progress")
        model, family = self.transformer, self.family
        F = family.check_frames(model, num_frames)
        dh, dw = family.default_size(model, self.vae)
        H, W = check_size(dh if height is None else height, dw if width is None else width,
                          *family.size_multiple(model, self.vae))
        check_prompt_input(prompt, negative_prompt, prompt_embeds)
        guided, device = guidance_scale > 1, self.device
        stats = self.last_run_stats = {"device": str(device), "memory": memory_method(device)}
        with stage(stats, "text", device):
            e = prompt_embeds if prompt_embeds is not None else self.encode_prompt(
                prompt, negative_prompt, guided=guided, num_videos_per_prompt=num_videos_per_prompt)
            if guided and not e.guided and not family.null_caption:
                raise ValueError("prompt_embeds has no unconditional half: encode with guided=True")
        with stage(stats, "denoise", device) as record, self.denoiser.use() as model:
            latents = self._denoise(model, e, F, H, W, generator, guidance_scale, num_inference_steps, progress)
            record.update(size=f"{F}x{H}x{W}", steps=num_inference_steps)
        if output_type == "latent":
            return latents
        with stage(stats, "decode", device) as record, self.decoder.use() as vae:
            frames = family.decode(vae, latents, decode_chunk_size, F)         # (B, 3, F, H, W)
            record["frames"] = F
        return video_output(frames, output_type)


# --------------------------------------------------------------------------------------------
# Latte-1: the diffusers folder
# --------------------------------------------------------------------------------------------
MISSING_PARTS = ("A Latte pipeline folder holds model_index.json, transformer/, text_encoder/, tokenizer/, vae/ and "
                 "scheduler/: `huggingface-cli download maxin-cn/Latte-1 --local-dir Latte-1`.")
DEFAULT_SCHEDULER = {"_class_name": "DDIMScheduler", "clip_sample": False}   # the official t2v_sample.yaml's DDIM


class LattePipeline(VideoPipeline):
    """Latte-1 text-to-video (`maxin-cn/Latte-1`): `LattePipeline.from_pretrained(folder)`."""

    def __init__(self, transformer: Latte, vae: AutoencoderKL, tokenizer, sampler: Sampler, **kw):
        super().__init__(LATTE, transformer, vae, tokenizer, sampler, **kw)

    @classmethod
    def from_pretrained(cls, folder, *, base=None, dtype=None, text_encoder_dtype=None, vae_dtype=None, device="cpu",
                        keep_text_encoder: bool = False) -> "LattePipeline":
        """A diffusers Latte folder (`base`: another one supplying what `folder` lacks). Dtypes default to
        `pipelines.pixart.default_dtypes(device)`: float16 transformer on CUDA (the official inference
        dtype), bfloat16 T5, float32 VAE; float32 on the CPU. The sampler is the folder's scheduler
        (Latte-1: DDIMScheduler); T5 is loaded for the text stage and freed after it."""
        parts = PipelineFolder(folder, base, hint=MISSING_PARTS)
        parts.pipeline_class((PIPELINE_CLASS,))
        parts.require("transformer", "vae", "text_encoder", "tokenizer")
        d, te, v = default_dtypes(device)
        sched = parts.scheduler_config()
        if sched is None:
            warnings.warn(f"no scheduler/scheduler_config.json in {folder}: sampling with DDIM (clip_sample=False), "
                          "the official Latte sampler", stacklevel=2)
        sampler = sampler_from_scheduler_config(dict(sched or DEFAULT_SCHEDULER))
        text_dir = parts.component("text_encoder")
        return cls(load_latte(parts.component("transformer"), dtype=dtype or d, device=device),
                   load_vae(parts.component("vae"), dtype=vae_dtype or v, device=device),
                   load_t5_tokenizer(parts.component("tokenizer")), sampler,
                   text_encoder_loader=lambda: load_t5(text_dir, dtype=text_encoder_dtype or te, device=device),
                   keep_text_encoder=check_flag(keep_text_encoder, "keep_text_encoder"), device=device)
