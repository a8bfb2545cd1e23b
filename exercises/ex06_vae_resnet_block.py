"""Exercise 6 — the VAE's ResNet block and its asymmetric downsampling (chapter 04_latent_space).

The AutoencoderKL that every DiT-family model denoises in is built from two small pieces:

    ResnetBlock   x -> shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))
    Downsample    pad ONE pixel on the right and bottom only, then a 3x3 conv with stride 2

The parameters are created for you with the ldm checkpoint's names (so the released weights
would load into your module); write the two `forward` methods, then check yourself:

    python -m pytest exercises/test_ex06_vae_resnet_block.py
"""
import torch
import torch.nn.functional as F
from torch import nn

# The minidit classes these stubs re-implement (used by CI to check the grader itself).
REFERENCE = {"ResnetBlock": "minidit.vae:ResnetBlock", "Downsample": "minidit.vae:Downsample"}


class ResnetBlock(nn.Module):
    """x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))); a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32):
        super().__init__()
        # We create the layers for you, with the checkpoint's names (encoder.down.0.block.0.norm1 ...).
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ┌──────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: with x of shape (B, C_in, H, W):                                                │
        # │   1. h = conv1(SiLU(norm1(x)))          -> (B, C_out, H, W)   (F.silu is SiLU)        │
        # │   2. h = conv2(SiLU(norm2(h)))          -> (B, C_out, H, W)                           │
        # │   3. shortcut = x, or nin_shortcut(x) when the block changes the width (it is None    │
        # │      otherwise)                          -> (B, C_out, H, W)                          │
        # │   4. return shortcut + h                                                              │
        # └──────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("ResnetBlock.forward")
        # *****END OF YOUR CODE*****


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only (ldm's asymmetric pad)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)   # note: padding=0 here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ┌──────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: (B, C, H, W) -> (B, C, H/2, W/2) for even H, W:                                 │
        # │   1. pad with zeros: 0 columns left, 1 right, 0 rows top, 1 bottom                    │
        # │      (F.pad's order for the last two dims is (left, right, top, bottom))              │
        # │                                          -> (B, C, H+1, W+1)                          │
        # │   2. apply self.conv (3x3, stride 2, no padding of its own)                           │
        # │ Why not padding=1 on both sides? The released weights were trained with this pad;     │
        # │ a symmetric pad shifts every output pixel by half a pixel.                            │
        # └──────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("Downsample.forward")
        # *****END OF YOUR CODE*****
