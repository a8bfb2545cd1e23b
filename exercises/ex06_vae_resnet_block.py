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
        # ┌────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: x (B, C_in, H, W) -> (B, C_out, H, W), the class docstring's formula:            │
        # │   * the residual branch, in this order: norm1, SiLU, conv1, then norm2, SiLU,          │
        # │     conv2                                             -> (B, C_out, H, W)              │
        # │   * the shortcut: x itself, or self.nin_shortcut(x) (a 1x1 conv) when the block        │
        # │     changes the width; it is None otherwise          -> (B, C_out, H, W)               │
        # │   * return their sum                                                                   │
        # │ Read first: chapters/04_latent_space.ipynb, section                                    │
        # │   - The pieces                                                                         │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.           │
        # └────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("ResnetBlock.forward")
        # *****END OF YOUR CODE*****


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only (ldm's asymmetric pad)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)   # note: padding=0 here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ┌────────────────────────────────────────────────────────────────────────────────────────┐
        # │ TODO: (B, C, H, W) -> (B, C, H/2, W/2) for even H, W:                                  │
        # │   1. pad with zeros: ONE column on the right and ONE row at the bottom, nothing on     │
        # │      the left or the top                            -> (B, C, H+1, W+1)                │
        # │   2. apply self.conv (3x3, stride 2, no padding of its own)                            │
        # │ Why not padding=1 on both sides? The released weights were trained with this pad;      │
        # │ a symmetric pad shifts every output pixel by half a pixel.                             │
        # │ Read first: chapters/04_latent_space.ipynb, section                                    │
        # │   - The pieces                                                                         │
        # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.           │
        # └────────────────────────────────────────────────────────────────────────────────────────┘
        # *****START OF YOUR CODE*****
        raise NotImplementedError("Downsample.forward")
        # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# ResnetBlock.forward
# -------------------
#     h = self.conv1(F.silu(self.norm1(x)))                      # (B, C_out, H, W)
#     h = self.conv2(F.silu(self.norm2(h)))                      # (B, C_out, H, W)
#     shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
#     return shortcut + h
# Why: each conv is preceded by its norm and activation ("pre-activation"), so the shortcut carries x
# untouched: a stack of blocks passes the signal (and the gradients) straight through, and each block
# only learns a correction. conv1 changes the width C_in -> C_out, so norm2 is built for C_out, and the
# shortcut has to reach C_out too: that is the 1x1 nin_shortcut ("network in network"), created only
# when the widths differ. ldm has a dropout between the second SiLU and conv2; it is 0 in every
# released VAE, so it is left out.
#
# Downsample.forward
# ------------------
#     return self.conv(F.pad(x, (0, 1, 0, 1)))                  # (B, C, H/2, W/2)
# Why: F.pad reads its tuple from the LAST dimension backwards: (left, right) for W, then (top, bottom)
# for H. So (0, 1, 0, 1) adds one zero column on the right and one zero row at the bottom. A 3x3 kernel
# with stride 2 and no padding then gives (H + 1 - 3) // 2 + 1 = H/2 rows for an even H, and output row
# i sees the input rows 2i, 2i+1, 2i+2. With padding=1 on both sides it would see 2i-1, 2i, 2i+1: the
# same shape, values shifted by one input pixel, and the released weights no longer fit.
