"""Exercise 15 — Hunyuan-DiT's 2-D rotary position embedding (chapter 09_hunyuan).

Hunyuan-DiT adds no position vector to its image tokens. It ROTATES each head's queries and keys
instead: the channels are read as pairs (x[2i], x[2i+1]) — interleaved pairs, not the two halves
of the head — and pair i turns by the angle position * theta_i, theta_i = 10000^(-2i/d). After the
rotation the score q_a . k_b depends on the two positions only through their difference. In 2-D
the first half of each head's channels turns with the token's column (w) and the second half with
its row (h), and the positions come from the "base-512" grid: the token grid is fitted into a
32 x 32 box, so a 1024 x 1024 image (64 x 64 tokens) has the positions 0, 0.5, ..., 31.5.

Write the three functions, then check yourself:

    python -m pytest exercises/test_ex15_rope_2d.py
"""
import torch

from minidit.embed import rope_crop  # noqa: F401  (the 32 x 32 box: you will need it in get_2d_rope)

# The minidit functions this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"rotate_pairs": "minidit.embed:rotate_pairs", "apply_rope": "minidit.embed:apply_rope",
             "get_2d_rope": "minidit.embed:get_2d_rope"}


def rotate_pairs(x):
    """(..., 2i, 2i+1) -> (..., -x[2i+1], x[2i]): multiplying each pair, read as a complex number, by i."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is (..., d) with d even; return a tensor of the same shape.                        │
    # │ Pair the channels as (0, 1), (2, 3), ... — NOT (0, d/2), (1, d/2 + 1), ... (that is        │
    # │ the "rotate-half" convention of other models; a Hunyuan checkpoint was trained with        │
    # │ the pairs). Each pair (a, b) becomes (-b, a). On the way:                                  │
    # │   the even and the odd channels                  -> two (..., d/2)                         │
    # │   the new pairs, on a new last axis              -> (..., d/2, 2)                          │
    # │   back to one channel axis                       -> (..., d)                               │
    # │ Example: [0, 1, 2, 3] -> [-1, 0, -3, 2].                                                   │
    # │ Read first: chapters/09_hunyuan.ipynb, section                                             │
    # │   - Interleaved pairs vs rotate-half                                                       │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("rotate_pairs")
    # *****END OF YOUR CODE*****


def apply_rope(x, cos, sin):
    """Rotate x (..., S, hd) by the tables (S, hd): x * cos + rotate_pairs(x) * sin, computed in
    float32 and returned in x's dtype (as the official `apply_rotary_emb`)."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is e.g. (B, nh, S, hd) queries or keys; cos and sin are (S, hd), each angle        │
    # │ repeated for the two channels of its pair, so they broadcast against x.                    │
    # │ For one pair (a, b) turned by the angle phi this is                                        │
    # │        (a cos phi - b sin phi,  b cos phi + a sin phi)   — a rotation.                     │
    # │ Compute in float32, return in x's dtype.                                                   │
    # │ Read first: chapters/09_hunyuan.ipynb, section                                             │
    # │   - RoPE vs sin-cos: added or rotated                                                      │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("apply_rope")
    # *****END OF YOUR CODE*****


def get_2d_rope(head_dim: int, th: int, tw: int, base_size: int | None = 32):
    """Hunyuan-DiT's image RoPE for an th x tw token grid -> cos, sin, each (th*tw, head_dim).

    base_size=32 is the released models' "base512" grid (512 px / 8 (VAE) / 2 (patch)): the grid is
    fitted into a 32 x 32 box (`rope_crop`), so at 1024^2 (64 x 64 tokens) the positions are
    0, 0.5, ..., 31.5 on both axes; base_size=None gives the plain 0..n-1 ("extend").
    Tokens are row-major; each head's first head_dim/2 channels rotate with the w (column)
    coordinate and the last head_dim/2 with h, as the official meshgrid(w, h) orders them.
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: head_dim not divisible by 4 is a ValueError (two axes, each in pairs).               │
    # │ 1. The box: (top, left), (bottom, right) = rope_crop(th, tw, base_size), or                │
    # │    (0, 0), (th, tw) when base_size is None.                                                │
    # │ 2. n positions on each axis from start towards stop, END EXCLUDED (as numpy's              │
    # │    linspace(start, stop, n, endpoint=False)), computed in float64 and then cast            │
    # │    to float32, as the official numpy code:                                                 │
    # │    rows: (th,) from top to bottom; columns: (tw,) from left to right.                      │
    # │ 3. Per token (row-major: token r * tw + c): its column position w and its row              │
    # │    position h                                             -> two (th*tw,)                  │
    # │ 4. For one axis with d = head_dim / 2 channels, in float32: pair i turns by the            │
    # │    angle position * 10000^(-2i/d); cos and sin of the angles, each repeated for            │
    # │    the 2 channels of its pair                              -> (th*tw, d) each              │
    # │ 5. Concatenate [w axis | h axis] on the channels           -> (th*tw, head_dim) each       │
    # │ Read first: chapters/09_hunyuan.ipynb, sections                                            │
    # │   - The base-512 grid, at any aspect ratio                                                 │
    # │   - Interleaved pairs vs rotate-half                                                       │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("get_2d_rope")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# rotate_pairs
# ------------
#     a, b = x.unflatten(-1, (-1, 2)).unbind(-1)             # even, odd channels: two (..., d/2)
#     return torch.stack([-b, a], dim=-1).flatten(-2)       # (..., d/2, 2) -> (..., d)
# Why: read the pair (a, b) as the complex number a + ib; multiplying by i gives -b + ia, i.e. (-b, a):
# a quarter turn. unflatten(-1, (-1, 2)) views the channels as (d/2 pairs, 2), so [..., 0] are the even
# channels and [..., 1] the odd ones; stacking (-b, a) on a new last axis and flattening puts each new
# pair back in place. Splitting x into x[..., :d//2] and x[..., d//2:] would pair channel i with
# i + d/2 instead: the "rotate-half" convention of other models, wrong for these weights.
#
# apply_rope
# ----------
#     xf = x.float()
#     return (xf * cos + rotate_pairs(xf) * sin).to(x.dtype)
# Why: turning a pair u by phi gives u cos phi + (u turned by a quarter) sin phi; rotate_pairs is the
# quarter turn, and the tables hold each angle twice (once per channel of its pair), so the two
# products line up channel by channel. (S, hd) broadcasts against (..., S, hd). In float16 or bfloat16
# the products and their sum would lose digits, so the official apply_rotary_emb rotates in float32 and
# casts back.
#
# get_2d_rope
# -----------
#     if head_dim % 4:
#         raise ValueError(f"head_dim must be divisible by 4, got {head_dim}")
#     if base_size is None:
#         (top, left), (bottom, right) = (0, 0), (th, tw)
#     else:
#         (top, left), (bottom, right) = rope_crop(th, tw, base_size)
#     def positions(start, stop, n):                          # numpy's linspace(..., endpoint=False)
#         return (torch.arange(n, dtype=torch.float64) * ((stop - start) / n) + start).float()
#     ph, pw = positions(top, bottom, th), positions(left, right, tw)      # (th,), (tw,)
#     w_of_token = pw[None, :].expand(th, tw).reshape(-1)                  # (th*tw,)
#     h_of_token = ph[:, None].expand(th, tw).reshape(-1)                  # (th*tw,)
#     d = head_dim // 2
#     freqs = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)   # (d/2,)
#     cos, sin = [], []
#     for p in (w_of_token, h_of_token):                      # the w axis first, then h
#         angles = torch.outer(p, freqs)                       # (th*tw, d/2)
#         cos.append(angles.cos().repeat_interleave(2, dim=1))  # (th*tw, d)
#         sin.append(angles.sin().repeat_interleave(2, dim=1))
#     return torch.cat(cos, dim=1), torch.cat(sin, dim=1)     # (th*tw, head_dim) each
# Why:
# * each axis needs its own channels, and each channel set is made of pairs: head_dim / 2 per axis,
#   an even number, hence head_dim % 4 == 0.
# * rope_crop fits the grid into the 32 x 32 box with its aspect ratio kept, the shorter side centred;
#   the positions then run from the box's start to its end, end excluded, so a 64-token side has the
#   steps 0, 0.5, ..., 31.5, the same positions as the 32-token (512 px) grid plus the half steps in
#   between: that is how a model trained at 512 px sees a 1024 px image.
# * row-major tokens: token r * tw + c sits in row r and column c, so its w position is pw[c] (repeat
#   the row of columns th times) and its h position is ph[r] (each row's value repeated tw times).
# * w first, then h: the official code builds meshgrid(w, h) and stacks it in that order; the released
#   weights were trained with the first half of each head rotating with the column.
# * repeat_interleave(2) repeats each angle for both channels of its pair (c0, c0, c1, c1, ...), the
#   layout rotate_pairs works with; .repeat(2) would give (c0, c1, ..., c0, c1, ...), rotate-half's.
