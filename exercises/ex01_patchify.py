"""Exercise 1 — patchify and unpatchify (chapter 01_patches_and_tokens).

A DiT sees an image (a VAE latent) as a sequence of tokens: the latent is cut into p x p patches,
each flattened into one vector. Write both directions with reshape/permute only (no loops, no
einops), then check yourself:

    python -m pytest exercises/test_ex01_patchify.py
"""
import torch

# The minidit functions these stubs re-implement (used by CI to check the grader itself).
REFERENCE = {"patchify": "minidit.embed:patchify", "unpatchify": "minidit.embed:unpatchify"}


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Cut (B, C, H, W) into non-overlapping p x p patches -> (B, T, C*p*p), tokens row-major.

    Each token is ordered (c, row, col), the order of a Conv2d weight's (C, p, p) dims, so
    `patchify(x, p) @ conv.weight.flatten(1).T + conv.bias` equals the strided convolution.
    """
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with h = H // p and w = W // p (T = h*w tokens):                                │
    # │   1. reshape (B, C, H, W)    -> (B, C, h, p, w, p)   split each axis into (block, pos)│
    # │   2. permute                 -> (B, h, w, C, p, p)   grid first, patch contents last  │
    # │   3. reshape                 -> (B, h*w, C*p*p)                                       │
    # │ Raise ValueError if H or W is not divisible by p.                                     │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("patchify")
    # *****END OF YOUR CODE*****


def unpatchify(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of the final layer's token layout: (B, T, p*p*C) -> (B, C, h*p, w*p).

    The final Linear's output channel index is (row*p + col)*C + c — a different order from
    patchify's (c, row, col). The released DiT weights need exactly this order.
    """
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with C = x.shape[-1] // (p*p):                                                  │
    # │   1. reshape (B, T, p*p*C)   -> (B, h, w, p, p, C)                                    │
    # │   2. permute                 -> (B, C, h, p, w, p)   (the official einsum is          │
    # │                                                       'nhwpqc->nchpwq')               │
    # │   3. reshape                 -> (B, C, h*p, w*p)                                      │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("unpatchify")
    # *****END OF YOUR CODE*****
