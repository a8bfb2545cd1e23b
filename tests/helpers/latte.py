"""Tiny random Latte models and pipeline folders written by diffusers' `save_pretrained`.

The transformer has Latte-1's options (ada_norm_single, gelu-approximate, no norm affine, learned sigma)
at a tiny size; `video_length` 16 frames (Latte-1's). The pipeline reuses PixArt's tiny T5 + VAE recipe
(`helpers.pixart.tiny_t5_and_vae`) and Latte-1's sampler: DDIMScheduler with linear betas 1e-4..0.02 and
clip_sample=False (the official t2v_sample.yaml). Every weight is randomised (helpers.weights.randomize),
including the adaLN tables and the output layer the default init leaves at zero.
"""
import shutil
from pathlib import Path

import torch

from helpers.pixart import T5_WIDTH, scale, tiny_t5_and_vae
from helpers.weights import randomize

FRAMES = 16
TINY = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
            cross_attention_dim=16, attention_bias=True, sample_size=8, patch_size=2, activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
            caption_channels=T5_WIDTH, video_length=FRAMES)
# Latte-1's transformer/config.json values (diffusers' LatteTransformer3DModel, maxin-cn/Latte-1)
LATTE_1 = dict(TINY, attention_head_dim=72, num_attention_heads=16, num_layers=28, cross_attention_dim=1152,
               sample_size=64, caption_channels=4096, video_length=16)
SCHEDULER = dict(beta_start=1e-4, beta_end=0.02, beta_schedule="linear", clip_sample=False)


def tiny_transformer(seed: int = 1, **overrides):
    from diffusers import LatteTransformer3DModel
    torch.manual_seed(0)
    return randomize(LatteTransformer3DModel(**{**TINY, **overrides}), seed=seed, scale=scale).eval()


def build_pipeline_folder(folder: Path, spiece_dir: Path) -> Path:
    """Write a tiny `LattePipeline` to `folder`."""
    from diffusers import DDIMScheduler, LattePipeline
    tokenizer, text_encoder, vae = tiny_t5_and_vae(spiece_dir, 0.18215)
    LattePipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=tiny_transformer(),
                  scheduler=DDIMScheduler(**SCHEDULER)).save_pretrained(folder)
    shutil.copy(spiece_dir / "spiece.model", folder / "tokenizer" / "spiece.model")
    return folder


def reference_pipeline(folder: Path):
    from diffusers import LattePipeline
    pipe = LattePipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
