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
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with h = H // p and w = W // p (T = h*w tokens), the shapes to go through:           │
    # │   (B, C, H, W) -> (B, C, h, p, w, p)   each axis split into (which patch, where in it)     │
    # │                -> (B, h, w, C, p, p)   the grid axes first, the patch's contents last      │
    # │                -> (B, h*w, C*p*p)      one row per token                                   │
    # │ Only reshape and permute (no loops, no einops). Tokens are row-major, and each token is    │
    # │ ordered (c, row, col), as the docstring says.                                              │
    # │ Raise ValueError if H or W is not divisible by p.                                          │
    # │ Read first: chapters/01_patches_and_tokens.ipynb, sections                                 │
    # │   - Patchify as a reshape                                                                  │
    # │   - Patchify as a strided convolution (what the checkpoints store)                         │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("patchify")
    # *****END OF YOUR CODE*****


def unpatchify(x: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of the final layer's token layout: (B, T, p*p*C) -> (B, C, h*p, w*p).

    The final Linear's output channel index is (row*p + col)*C + c — a different order from
    patchify's (c, row, col). The released DiT weights need exactly this order.
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with C = x.shape[-1] // (p*p), the shapes to go through:                             │
    # │   (B, T, p*p*C) -> (B, h, w, p, p, C)   each token's channels are ordered (row, col, c)    │
    # │                 -> (B, C, h, p, w, p)                                                      │
    # │                 -> (B, C, h*p, w*p)                                                        │
    # │ This is NOT patchify run backwards: the order inside a token differs (see the docstring).  │
    # │ Read first: chapters/01_patches_and_tokens.ipynb, section                                  │
    # │   - Unpatchify — a different order on the way out                                          │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("unpatchify")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# patchify
# --------
#     B, C, H, W = x.shape
#     if H % p or W % p:
#         raise ValueError(f"{H}x{W} is not divisible by the patch size {p}")
#     x = x.reshape(B, C, H // p, p, W // p, p)        # (B, C, h, p, w, p)
#     x = x.permute(0, 2, 4, 1, 3, 5)                  # (B, h, w, C, p, p)
#     return x.reshape(B, (H // p) * (W // p), C * p * p)
# Why: a reshape only regroups indices, it moves no data. A row index y of the image is y = i*p + a
# (i: which patch row, a: the row inside the patch), so H splits into (h, p) and W into (w, p). The axes
# are then (0: B, 1: C, 2: h, 3: row, 4: w, 5: col). permute(0, 2, 4, 1, 3, 5) brings the grid (h, w)
# forward, so the tokens come out row-major (token i*w + j), and leaves (C, row, col) last: the order of
# a Conv2d weight's (C_in, kH, kW) dims, which is why a token dotted with conv.weight.flatten(1) gives
# the strided convolution's output. The last reshape merges (h, w) and (C, p, p); after a permute the
# tensor is not contiguous, so use reshape (it copies when it must), not view.
# Check the sizes first: with H % p != 0 the first reshape fails with a message about element counts,
# not about p.
#
# unpatchify
# ----------
#     B, T, K = x.shape
#     C = K // (p * p)
#     x = x.reshape(B, h, w, p, p, C)                  # (B, h, w, p, p, C)
#     x = x.permute(0, 5, 1, 3, 2, 4)                  # (B, C, h, p, w, p)
#     return x.reshape(B, C, h * p, w * p)
# Why: the final Linear writes each token's p*p*C numbers with the index (row*p + col)*C + c, so the
# reshape names the axes (0: B, 1: h, 2: w, 3: row, 4: col, 5: C). An image row is (h, row) and an image
# column (w, col): they must be neighbours before the last reshape merges them, hence (B, C, h, row, w,
# col) = permute(0, 5, 1, 3, 2, 4). The official code writes the same permutation as the einsum
# 'nhwpqc->nchpwq'. If you reuse patchify's order (c, row, col) instead, every shape still works and the
# picture is scrambled: the grader's token-layout test gives each value a code that shows which one.
