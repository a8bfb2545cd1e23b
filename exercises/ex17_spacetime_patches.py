"""Exercise 17 — spacetime patches and the factorized-attention reshapes (chapter 11_spacetime).

A video DiT (Sora's "spacetime patches", Open-Sora's STDiT, Latte) sees a clip of latents
(B, C, F0, H0, W0) as one sequence of tokens: the clip is cut into pt x ph x pw TUBELETS (a few
frames of a small square), each flattened into one vector. The tokens are ordered T-H-W: all the
tokens of the first frame (row-major), then those of the next frame, and so on.

Attending over all F*S tokens of a clip at once costs (F*S)^2 scores. STDiT factorizes it: a
SPATIAL attention inside each frame (the clip as B*F sequences of S tokens) and a TEMPORAL one at
each spatial position (B*S sequences of F tokens, one per frame). Both are only reshapes of the
same (B, F*S, D) tokens, there and back. Write the five functions with reshape/permute/transpose
(no loops, no einops), then check yourself:

    python -m pytest exercises/test_ex17_spacetime_patches.py
"""
import torch

# The minidit functions this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"patchify3d": "minidit.spacetime:patchify3d", "to_spatial": "minidit.spacetime:to_spatial",
             "from_spatial": "minidit.spacetime:from_spatial", "to_temporal": "minidit.spacetime:to_temporal",
             "from_temporal": "minidit.spacetime:from_temporal"}


def patchify3d(x: torch.Tensor, patch) -> torch.Tensor:
    """Cut (B, C, F0, H0, W0) into pt x ph x pw tubelets -> (B, F*H*W, C*pt*ph*pw), T-H-W order.

    `patch` is (pt, ph, pw) or one int for all three. F = F0 // pt, H = H0 // ph, W = W0 // pw.
    Token n = (f*H + i)*W + j (frame f, row i, column j). Each token is ordered (c, dt, di, dj), the
    order of a Conv3d weight's (C, pt, ph, pw) dims, so `patchify3d(x, p) @ proj.weight.flatten(1).T
    + proj.bias` is Open-Sora's PatchEmbed3D (a Conv3d with kernel = stride = the tubelet).
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with (pt, ph, pw) the tubelet and (F, H, W) the token grid, the shapes:              │
    # │   (B, C, F0, H0, W0) -> (B, C, F, pt, H, ph, W, pw)   each axis split into                 │
    # │                                                       (which tubelet, where in it)         │
    # │                      -> (B, F, H, W, C, pt, ph, pw)   the grid first (f, i, j), the        │
    # │                                                       tubelet's contents last              │
    # │                      -> (B, F*H*W, C*pt*ph*pw)        one row per token                    │
    # │ Accept an int patch (p -> (p, p, p)). Raise ValueError if F0, H0 or W0 is not divisible by │
    # │ its tubelet size (say which).                                                              │
    # │ Read first: chapters/11_spacetime.ipynb, sections                                          │
    # │   - Tubelets: a clip cut into spacetime patches                                            │
    # │   - Tubelets as a strided Conv3d (what the checkpoints store)                              │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("patchify3d")
    # *****END OF YOUR CODE*****


def to_spatial(x: torch.Tensor, F: int, S: int) -> torch.Tensor:
    """(B, F*S, D) -> (B*F, S, D): each frame's S tokens are one sequence; sequence b*F + f is frame f
    of clip b (spatial attention then stays inside a frame)."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: the tokens are T-H-W ordered, so frame f's S tokens are already contiguous.          │
    # │   (B, F*S, D) -> (B*F, S, D)                                                               │
    # │ Raise ValueError unless x is 3-D with F*S tokens.                                          │
    # │ Read first: chapters/11_spacetime.ipynb, section                                           │
    # │   - Factorized attention is two reshapes                                                   │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("to_spatial")
    # *****END OF YOUR CODE*****


def from_spatial(x: torch.Tensor, F: int, S: int) -> torch.Tensor:
    """(B*F, S, D) -> (B, F*S, D), the inverse of `to_spatial`."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: (B*F, S, D) -> (B, F*S, D), with B = x.shape[0] // F.                                │
    # │ Read first: chapters/11_spacetime.ipynb, section                                           │
    # │   - Factorized attention is two reshapes                                                   │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("from_spatial")
    # *****END OF YOUR CODE*****


def to_temporal(x: torch.Tensor, F: int, S: int) -> torch.Tensor:
    """(B, F*S, D) -> (B*S, F, D): the F tokens at spatial position s, one per frame, are one
    sequence; sequence b*S + s holds clip b's tokens f*S + s for f = 0 .. F-1, in frame order."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: the shapes to go through:                                                            │
    # │   (B, F*S, D) -> (B, F, S, D)     split the token axis: frame outer, position inner        │
    # │               -> (B, S, F, D)     positions before frames                                  │
    # │               -> (B*S, F, D)      one sequence per (clip, position)                        │
    # │ A plain reshape to (B*S, F, D) moves no data: it would cut the T-H-W order into runs of F  │
    # │ neighbouring tokens of ONE frame. Raise ValueError unless x is 3-D with F*S tokens.        │
    # │ Read first: chapters/11_spacetime.ipynb, section                                           │
    # │   - Factorized attention is two reshapes                                                   │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("to_temporal")
    # *****END OF YOUR CODE*****


def from_temporal(x: torch.Tensor, F: int, S: int) -> torch.Tensor:
    """(B*S, F, D) -> (B, F*S, D), the inverse of `to_temporal` (back to T-H-W order)."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: undo to_temporal's three steps in reverse order:                                     │
    # │   (B*S, F, D) -> (B, S, F, D) -> (B, F, S, D) -> (B, F*S, D),  with B = x.shape[0] // S.   │
    # │ Read first: chapters/11_spacetime.ipynb, section                                           │
    # │   - Factorized attention is two reshapes                                                   │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("from_temporal")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# patchify3d
# ----------
#     pt, ph, pw = (patch, patch, patch) if isinstance(patch, int) else patch
#     B, C, F0, H0, W0 = x.shape
#     for name, size, p in (("F0", F0, pt), ("H0", H0, ph), ("W0", W0, pw)):
#         if size % p:
#             raise ValueError(f"{name} = {size} is not divisible by the tubelet size {p}")
#     F, H, W = F0 // pt, H0 // ph, W0 // pw
#     x = x.reshape(B, C, F, pt, H, ph, W, pw)          # (B, C, F, pt, H, ph, W, pw)
#     x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)             # (B, F, H, W, C, pt, ph, pw)
#     return x.reshape(B, F * H * W, C * pt * ph * pw)  # (B, N, C*pt*ph*pw)
# Why: a frame index t of the clip is t = f*pt + dt (f: which tubelet along time, dt: the frame inside
# it), and the same holds for rows and columns, so each of F0, H0, W0 splits into (grid, offset). The
# axes are then (0 B, 1 C, 2 f, 3 dt, 4 i, 5 di, 6 j, 7 dj). permute(0, 2, 4, 6, 1, 3, 5, 7) brings
# the grid (f, i, j) forward in that order, so the tokens come out T-H-W (frame outer, then row, then
# column: what Conv3d(...).flatten(2) gives), and leaves (c, dt, di, dj) last: the order of a Conv3d
# weight's (C_in, kT, kH, kW) dims, which is why a token dotted with proj.weight.flatten(1) is the
# strided convolution's output. With pt = 1 every frame is patchified on its own, exactly as the 2-D
# patchify of exercise 1. Check the sizes first: otherwise reshape fails with a message about element
# counts, not about the tubelet.
#
# to_spatial
# ----------
#     if x.ndim != 3 or x.shape[1] != F * S:
#         raise ValueError(f"expected (B, F*S = {F * S}, D) tokens, got {tuple(x.shape)}")
#     B, _, D = x.shape
#     return x.reshape(B * F, S, D)                     # (B*F, S, D)
# Why: in T-H-W order token n = f*S + s, so the index (b, n) of (B, F*S) is already (b, f, s): merging
# b and f and keeping s is a plain reshape (a view, no copy). Row b*F + f is frame f of clip b.
#
# from_spatial
# ------------
#     BF, _, D = x.shape
#     return x.reshape(BF // F, F * S, D)               # (B, F*S, D)
# Why: the exact inverse view: (b*F + f, s) -> (b, f*S + s).
#
# to_temporal
# -----------
#     if x.ndim != 3 or x.shape[1] != F * S:
#         raise ValueError(f"expected (B, F*S = {F * S}, D) tokens, got {tuple(x.shape)}")
#     B, _, D = x.shape
#     x = x.reshape(B, F, S, D).transpose(1, 2)         # (B, S, F, D)
#     return x.reshape(B * S, F, D)                     # (B*S, F, D)
# Why: a temporal sequence must hold the tokens f*S + s for one s and every f: they are S apart in
# memory, not neighbours. reshape(B, F, S, D) names the two indices (frame outer, as T-H-W stores
# them), transpose(1, 2) puts the position before the frame, and the last reshape merges (b, s): row
# b*S + s. The transpose makes the tensor non-contiguous, so the last reshape copies (view would fail).
# reshape(B, S, F, D) instead of (B, F, S, D) would claim the position is the outer index, which it is
# not: the sequences would then mix tokens of different positions.
#
# from_temporal
# -------------
#     BS, _, D = x.shape
#     x = x.reshape(BS // S, S, F, D).transpose(1, 2)   # (B, F, S, D)
#     return x.reshape(BS // S, F * S, D)               # (B, F*S, D)
# Why: undo the steps in reverse: split the rows into (b, s), swap back to frame-outer, merge (f, s)
# into T-H-W tokens f*S + s. Reshaping (B*S, F, D) straight to (B, F*S, D) skips the transpose back:
# the shapes fit, but token f*S + s would receive the value of another (frame, position).
