"""Open-Sora 1.0 and 1.2 text-to-video: the `VideoFamily` adapters and their pipelines.

Papers: Open-Sora (Zheng et al., arXiv:2412.20404); the samplers: IDDPM (Nichol & Dhariwal,
arXiv:2102.09672, respacing + learned range) for 1.0, rectified flow (arXiv:2209.03003) for 1.2.
Official code: hpcaitech/Open-Sora v1.0 (the `inference.py` script, `opensora/schedulers/iddpm/`) and
v1.2.0 (the `inference.py` script, `opensora/utils/inference_utils.py`, `opensora/schedulers/rf/`).

    pipe = OpenSora1Pipeline.from_pretrained("opensora-1.0")     # the .pth + t5-v1_1-xxl/ + sd-vae-ft-ema/
    pipe = OpenSora12Pipeline.from_pretrained("opensora-1.2")    # OpenSora-STDiT-v3/ + OpenSora-VAE-v1.2/ + t5-v1_1-xxl/
    video = pipe("a cat wearing sunglasses at the pool", generator=torch.Generator().manual_seed(0))[0]

What the official samplers do, and so these adapters (tests/test_pipeline_opensora.py checks each
against the official loop written out in the test):

  Open-Sora 1.0 (`OPENSORA_1`, STDiT, `minidit/stdit.py`)
    text     120 T5-XXL tokens with their mask; the prompt as written (the v1.0 T5 encoder does not
             lower-case or clean it).
    guidance the stored null caption `y_embedder.y_embedding` as the unconditional branch (no negative
             prompt), the conditional mask used for both halves; scale 7.0 on eps, the learned v of
             the conditional half (the official `forward_with_cfg`).
    sampler  IDDPM, 100 respaced steps of the linear 1e-4..0.02 schedule, learned-range variance
             (`Sampler("ddpm", spacing="iddpm", variance="learned_range")`). The official loop carries
             the null half through the chain, so each step draws noise for 2B videos and keeps the
             first B (`pipelines.dit.null_half_noise`, DiT's identical stream).
    frames   the checkpoint's 16 (its temporal table); the training size (256^2 or 512^2) by default.
    decode   sd-vae-ft-ema on every frame (latents / 0.18215).

  Open-Sora 1.2 (`OPENSORA_12`, STDiT3, `minidit/stdit3.py`)
    text     300 T5-XXL tokens with their mask; " aesthetic score: 6.5." appended to each prompt (the
             official sample config's `aes = 6.5`, `append_score_to_prompts`; `aesthetic_score=None`
             appends nothing). The official script then runs PixArt's `clean_caption` (ftfy,
             BeautifulSoup, URL and symbol removal, lower-casing); here prompts are lower-cased and
             stripped only, as every minidit T5 pipeline (identical for plain text).
    guidance as 1.0 (null caption, the conditional mask for both halves), scale 7.0.
    sampler  30 Euler steps of rectified flow at t_i = 1 - i/30, shifted by s = opensora_shift(H, W, F)
             (`Sampler("euler", prediction_type="flow", spacing="flow_opensora")`); the model is fed
             t * 1000, fps (24; 120 for an image) and the PIXEL height and width, and predicts x0 - eps:
             `forward` negates it into minidit's flow convention (eps - x0).
    frames   1 (an image) or 17 and more (51 = the official "2s", 102 = "4s"): 2..16 frames give the
             timestep transform 0 latent frames, a shift of 0 (no denoising), so they are refused.
             Latent frames: 5 per 17-frame clip (the video VAE's `latent_frames`).
    size     any multiple of 8 pixels (STDiT3 pads odd latent sizes); 512 x 512 by default
             (`input_sq_size`, the size its position table is stretched to; the official default is
             480p 9:16).
    decode   the video VAE (`minidit/vae_temporal.py`) with the frame count.

Glossary (official code | here)
  IDDPM(num_sampling_steps=100)      | OPENSORA_1_SAMPLER
  RFLOW(num_sampling_steps=30, use_timestep_transform=True) | OPENSORA_12_SAMPLER + flow.opensora_shift
  y_null = y_embedder.y_embedding    | OpenSoraFamily.text_input
  append_score_to_prompts(aes=6.5)   | OpenSora12Family.prompts

Shape legend: B videos, C latent channels, F frames (F' latent frames), h w latent size, L caption tokens.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from minidit.errors import InputError
from minidit.flow import opensora_shift
from minidit.samplers import Sampler
from minidit.stdit import STDiT
from minidit.stdit3 import STDiT3
from weights_loader import load_opensora_vae, load_stdit, load_stdit3, load_t5, load_t5_tokenizer, load_vae
from weights_loader.errors import CheckpointError
from .checks import check_flag, check_int
from .common import PromptEmbeds
from .dit import null_half_noise
from .pixart import default_dtypes
from .video import VideoFamily, VideoPipeline

OPENSORA_1_SAMPLER = Sampler("ddpm", variance="learned_range", spacing="iddpm")
OPENSORA_12_SAMPLER = Sampler("euler", prediction_type="flow", spacing="flow_opensora")
T5_FOLDERS = ("t5-v1_1-xxl", "text_encoder")
IMAGE_FPS, VIDEO_FPS = 120, 24          # the official IMG_FPS and the sample config's fps


class OpenSoraFamily(VideoFamily):
    """What both Open-Sora versions share: the stored null caption and the learned-sigma output."""
    null_caption = True

    def caption_length(self, transformer) -> int:
        return transformer.config.model_max_length      # the null caption's length: 120 (1.0) / 300 (1.2)

    def learn_sigma(self, transformer) -> bool:
        return transformer.config.pred_sigma

    def text_input(self, transformer, e: PromptEmbeds, guided: bool) -> PromptEmbeds:
        """Guided: the unconditional branch is y_embedding for every video, with the conditional mask."""
        if not guided:
            return PromptEmbeds(e.cond, e.cond_mask)
        null = transformer.y_embedder.null_caption()                           # (L, C_cap)
        if null.shape[0] != e.cond.shape[1]:
            raise InputError(f"the prompt states have {e.cond.shape[1]} tokens; {self.name}'s null caption has "
                             f"{null.shape[0]}: encode with {null.shape[0]} tokens")
        uncond = null.to(e.cond)[None].expand(e.cond.shape[0], -1, -1)        # (B, L, C_cap)
        return PromptEmbeds(e.cond, e.cond_mask, uncond=uncond, uncond_mask=e.cond_mask)


class OpenSora1Family(OpenSoraFamily):
    """Open-Sora 1.0 (STDiT): see the module docstring."""
    name = "opensora-1.0"
    lower_case = False

    def check_frames(self, transformer: STDiT, frames: int) -> int:
        trained = transformer.config.input_size[0]
        if check_int(frames, "num_frames", minimum=1) != trained:
            raise InputError(f"num_frames {frames}: this Open-Sora 1.0 checkpoint makes {trained} frames (the "
                             "length of its temporal position table)")
        return frames

    def default_size(self, transformer: STDiT, vae) -> tuple[int, int]:
        _, h, w = transformer.config.input_size
        return h * vae.config.downsample_factor, w * vae.config.downsample_factor

    def size_multiple(self, transformer: STDiT, vae) -> tuple[int, str]:
        return vae.config.downsample_factor * transformer.config.patch_size[1], "VAE x patch"

    def noise_fn(self, generator, guided: bool):
        return null_half_noise(generator) if guided else None

    def forward(self, transformer: STDiT, x, t, y, mask, **size):
        return transformer(x, t, y, mask)


class OpenSora12Family(OpenSoraFamily):
    """Open-Sora 1.2 (STDiT3 + the video VAE): see the module docstring."""
    name = "opensora-1.2"

    def __init__(self, aesthetic_score: float | None = 6.5):
        self.aesthetic_score = aesthetic_score

    def prompts(self, prompts: list[str]) -> list[str]:
        if self.aesthetic_score is None:
            return prompts
        return [p if "aesthetic score:" in p else f"{p} aesthetic score: {self.aesthetic_score:.1f}." for p in prompts]

    def check_frames(self, transformer: STDiT3, frames: int) -> int:
        frames = check_int(frames, "num_frames", minimum=1)
        if 1 < frames < 17:
            raise InputError(f"num_frames {frames}: Open-Sora 1.2 makes 1 frame (an image) or 17 and more (51 = "
                             "its \"2s\", 102 = \"4s\"): for 2..16 frames its timestep transform counts 0 latent "
                             "frames, a shift of 0, and would not denoise at all")
        return frames

    def default_size(self, transformer: STDiT3, vae) -> tuple[int, int]:
        side = transformer.config.input_sq_size
        return side, side

    def size_multiple(self, transformer: STDiT3, vae) -> tuple[int, str]:
        return vae.config.vae_2d.downsample_factor, "the VAE's factor"

    def latent_shape(self, transformer: STDiT3, vae, B: int, F: int, H: int, W: int) -> tuple:
        f = vae.config.vae_2d.downsample_factor
        return B, len(vae.config.shift), vae.latent_frames(F), H // f, W // f

    def sampler(self, sampler: Sampler, F: int, H: int, W: int) -> Sampler:
        return replace(sampler, shift=opensora_shift(H, W, F))

    def forward(self, transformer: STDiT3, x, t, y, mask, *, num_frames: int, height: int, width: int):
        fps = IMAGE_FPS if num_frames == 1 else VIDEO_FPS
        return -transformer(x, t, y, mask, fps=fps, height=height, width=width)     # x0 - eps -> eps - x0

    def decode(self, vae, latents, chunk: int, num_frames: int | None = None):
        return vae.decode(latents, num_frames=num_frames).float()                    # (B, 3, F, H, W)


OPENSORA_1 = OpenSora1Family()
OPENSORA_12 = OpenSora12Family()


def _part(folder: Path, names: tuple[str, ...], what: str, hint: str) -> Path:
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    raise CheckpointError(f"{folder} has no {' or '.join(n + '/' for n in names)} folder ({what}). {hint}")


def _text_parts(text_encoder_folder, dtype, device):
    """(tokenizer, a loader of the T5 encoder): T5 is read when the text stage needs it."""
    return load_t5_tokenizer(text_encoder_folder), lambda: load_t5(text_encoder_folder, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Open-Sora 1.0
# --------------------------------------------------------------------------------------------
HINT_1 = ("An Open-Sora 1.0 folder holds the STDiT .pth, t5-v1_1-xxl/ and sd-vae-ft-ema/: "
          "`huggingface-cli download hpcai-tech/Open-Sora OpenSora-v1-HQ-16x256x256.pth --local-dir DIR`, "
          "`huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir DIR/t5-v1_1-xxl`, "
          "`huggingface-cli download stabilityai/sd-vae-ft-ema --local-dir DIR/sd-vae-ft-ema`.")


class OpenSora1Pipeline(VideoPipeline):
    """Open-Sora 1.0: `OpenSora1Pipeline.from_pretrained(folder)` or `.from_original(pth, t5_dir, vae_dir)`."""

    def __init__(self, transformer: STDiT, vae, tokenizer, sampler: Sampler = OPENSORA_1_SAMPLER, **kw):
        super().__init__(OPENSORA_1, transformer, vae, tokenizer, sampler, **kw)

    @classmethod
    def from_original(cls, stdit_pth, text_encoder_folder, vae_folder, *, dtype=None, text_encoder_dtype=None,
                      vae_dtype=None, device="cpu", keep_text_encoder: bool = False) -> "OpenSora1Pipeline":
        """The files the official inference reads: the STDiT `.pth` (`OpenSora-v1-HQ-16x256x256.pth`, ...),
        a T5-XXL folder (`DeepFloyd/t5-v1_1-xxl`, with its spiece.model) and `stabilityai/sd-vae-ft-ema`.
        Dtypes default to `pipelines.pixart.default_dtypes(device)` (float16 transformer on CUDA, the
        official inference dtype); T5 is loaded for the text stage and freed after it."""
        d, te, v = default_dtypes(device)
        tokenizer, t5 = _text_parts(Path(text_encoder_folder), text_encoder_dtype or te, device)
        return cls(load_stdit(stdit_pth, dtype=dtype or d, device=device),
                   load_vae(vae_folder, dtype=vae_dtype or v, device=device), tokenizer,
                   text_encoder_loader=t5, keep_text_encoder=check_flag(keep_text_encoder, "keep_text_encoder"),
                   device=device)

    @classmethod
    def from_pretrained(cls, path, **kw) -> "OpenSora1Pipeline":
        """`path`: a folder holding one STDiT `.pth`, `t5-v1_1-xxl/` (or `text_encoder/`) and `sd-vae-ft-ema/`
        (or `vae/`); or the `.pth` itself, with those folders beside it. Options as `from_original`."""
        path = Path(path)
        if path.is_file():
            pth, folder = path, path.parent
        elif path.is_dir():
            folder, found = path, sorted(path.glob("*.pth"))
            if len(found) != 1:
                raise CheckpointError(f"{path} holds {len(found)} .pth files ({', '.join(p.name for p in found)}): "
                                      f"it needs exactly one STDiT checkpoint (or pass the .pth itself). {HINT_1}")
            pth = found[0]
        else:
            raise CheckpointError(f"{path} does not exist. {HINT_1}")
        return cls.from_original(pth, _part(folder, T5_FOLDERS, "T5-XXL", HINT_1),
                                 _part(folder, ("sd-vae-ft-ema", "vae"), "the SD VAE", HINT_1), **kw)

    def __call__(self, prompt=None, negative_prompt="", num_frames: int = 16, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 100, guidance_scale: float = 7.0, **kw):
        """As `VideoPipeline.__call__`, with the official sample config's defaults (16 frames, IDDPM 100, 7.0)."""
        return super().__call__(prompt, negative_prompt, num_frames, height, width, num_inference_steps,
                                guidance_scale, **kw)


# --------------------------------------------------------------------------------------------
# Open-Sora 1.2
# --------------------------------------------------------------------------------------------
HINT_12 = ("An Open-Sora 1.2 folder holds OpenSora-STDiT-v3/, OpenSora-VAE-v1.2/ and t5-v1_1-xxl/: "
           "`huggingface-cli download hpcai-tech/OpenSora-STDiT-v3 --local-dir DIR/OpenSora-STDiT-v3`, "
           "`huggingface-cli download hpcai-tech/OpenSora-VAE-v1.2 --local-dir DIR/OpenSora-VAE-v1.2`, "
           "`huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir DIR/t5-v1_1-xxl`.")


class OpenSora12Pipeline(VideoPipeline):
    """Open-Sora 1.2: `OpenSora12Pipeline.from_pretrained(folder)` or `.from_original(stdit3, vae, t5)`."""

    def __init__(self, transformer: STDiT3, vae, tokenizer, sampler: Sampler = OPENSORA_12_SAMPLER, *,
                 aesthetic_score: float | None = 6.5, **kw):
        family = OPENSORA_12 if aesthetic_score == 6.5 else OpenSora12Family(aesthetic_score)
        super().__init__(family, transformer, vae, tokenizer, sampler, **kw)

    @classmethod
    def from_original(cls, stdit3_folder, vae_folder, text_encoder_folder, *, dtype=None, text_encoder_dtype=None,
                      vae_dtype=None, device="cpu", keep_text_encoder: bool = False,
                      aesthetic_score: float | None = 6.5) -> "OpenSora12Pipeline":
        """`hpcai-tech/OpenSora-STDiT-v3`, `hpcai-tech/OpenSora-VAE-v1.2` and a T5-XXL folder. The transformer
        is bfloat16 on CUDA (the official dtype; float32 on the CPU), T5 and the VAE as `default_dtypes`."""
        d, te, v = default_dtypes(device)
        if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
            d = torch.bfloat16
        tokenizer, t5 = _text_parts(Path(text_encoder_folder), text_encoder_dtype or te, device)
        return cls(load_stdit3(stdit3_folder, dtype=dtype or d, device=device),
                   load_opensora_vae(vae_folder, dtype=vae_dtype or v, device=device), tokenizer,
                   text_encoder_loader=t5, keep_text_encoder=check_flag(keep_text_encoder, "keep_text_encoder"),
                   device=device, aesthetic_score=aesthetic_score)

    @classmethod
    def from_pretrained(cls, folder, **kw) -> "OpenSora12Pipeline":
        """`folder` holding `OpenSora-STDiT-v3/` (or `transformer/`), `OpenSora-VAE-v1.2/` (or `vae/`) and
        `t5-v1_1-xxl/` (or `text_encoder/`). Options as `from_original`."""
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder} does not exist or is not a folder. {HINT_12}")
        return cls.from_original(_part(folder, ("OpenSora-STDiT-v3", "transformer"), "STDiT3", HINT_12),
                                 _part(folder, ("OpenSora-VAE-v1.2", "vae"), "the video VAE", HINT_12),
                                 _part(folder, T5_FOLDERS, "T5-XXL", HINT_12), **kw)

    def __call__(self, prompt=None, negative_prompt="", num_frames: int = 51, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 30, guidance_scale: float = 7.0, **kw):
        """As `VideoPipeline.__call__`, with the official sample config's sampler (rflow 30 steps, 7.0);
        51 frames (its "2s") at 512 x 512 by default."""
        return super().__call__(prompt, negative_prompt, num_frames, height, width, num_inference_steps,
                                guidance_scale, **kw)
