"""Tiny random PixArt-α / PixArt-Σ pipeline folders written by diffusers' `save_pretrained`.

The recipe (docs/testing.md#tiny-oracles-what-makes-them-work-offline): a sentencepiece model trained here
(T5's id layout), a 2-layer T5 encoder, a 4-level VAE (x8 like the real ones), the transformer,
`DPMSolverMultistepScheduler()` (what the PixArt repositories ship). transformers 5 saves only
`tokenizer.json`, so `spiece.model` is copied into `tokenizer/` (the hub folders hold it too).
Every transformer weight is randomised, including the parts the default init leaves at zero or
near-identity (the adaLN tables, `adaln_single`, the output layer), so nothing passes trivially.
"""
import shutil
from pathlib import Path

import torch

from helpers.text import train_spiece
from helpers.weights import randomize

VOCAB = 600
T5_WIDTH = 32          # = the transformer's caption_channels
# Σ-like: sample_size 32 = a "256-px" model, so diffusers bins to ASPECT_RATIO_256_BIN.
SIGMA = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2,
             cross_attention_dim=16, caption_channels=T5_WIDTH, sample_size=32, patch_size=2,
             interpolation_scale=0.5, use_additional_conditions=False, norm_num_groups=8)
# α-like with micro-conditions: PixArtAlphaPipeline passes resolution / aspect ratio only when
# sample_size == 128; heads x head_dim divisible by 3 (three size embedders of D/3).
ALPHA = dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
             cross_attention_dim=24, caption_channels=T5_WIDTH, sample_size=128, patch_size=2,
             norm_num_groups=8)


def scale(name: str) -> float:
    """A larger caption projection, so the prompt visibly changes the tiny model's output (larger
    cross-attention weights make the model chaotic: float32 rounding then decides the picture)."""
    if "scale_shift_table" in name:
        return 0.3
    return 0.6 if "caption_projection" in name else 0.15


def tiny_t5_and_vae(spiece_dir: Path, scaling_factor: float):
    """(tokenizer, 2-layer T5 encoder, 4-level x8 VAE), seeded: the text and image parts of a tiny pipeline
    (PixArt's here, Latte's in tests/helpers/latte.py)."""
    from diffusers import AutoencoderKL
    from transformers import T5Config, T5EncoderModel, T5Tokenizer
    torch.manual_seed(0)
    if not (spiece_dir / "spiece.model").is_file():
        train_spiece(spiece_dir, VOCAB)
    tokenizer = T5Tokenizer.from_pretrained(spiece_dir, extra_ids=0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=T5_WIDTH, d_kv=16, d_ff=64, num_layers=2,
                                           num_heads=2, feed_forward_proj="gated-gelu")).eval()
    vae = AutoencoderKL(latent_channels=4, layers_per_block=1, block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        scaling_factor=scaling_factor)
    return tokenizer, text_encoder, vae


def build_pipeline_folder(folder: Path, which: str, spiece_dir: Path) -> Path:
    """Write a tiny `PixArtSigmaPipeline` ("sigma") or `PixArtAlphaPipeline` ("alpha") to `folder`."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtSigmaPipeline, PixArtTransformer2DModel
    tokenizer, text_encoder, vae = tiny_t5_and_vae(spiece_dir, 0.13025 if which == "sigma" else 0.18215)
    transformer = randomize(PixArtTransformer2DModel(**(SIGMA if which == "sigma" else ALPHA)), seed=1, scale=scale)
    cls = PixArtSigmaPipeline if which == "sigma" else PixArtAlphaPipeline
    cls(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
        scheduler=DPMSolverMultistepScheduler()).save_pretrained(folder)
    shutil.copy(spiece_dir / "spiece.model", folder / "tokenizer" / "spiece.model")
    return folder


def reference_pipeline(folder: Path, which: str):
    from diffusers import PixArtAlphaPipeline, PixArtSigmaPipeline
    pipe = (PixArtSigmaPipeline if which == "sigma" else PixArtAlphaPipeline).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
