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
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is (..., d) with d even; return a tensor of the same shape.                   │
    # │ Pair the channels as (0, 1), (2, 3), ... — NOT (0, d/2), (1, d/2 + 1), ... (that is   │
    # │ the "rotate-half" convention of other models; a Hunyuan checkpoint was trained with   │
    # │ the pairs).                                                                           │
    # │   1. a, b = the even and the odd channels        x.unflatten(-1, (-1, 2)).unbind(-1)  │
    # │                                                  -> two (..., d/2)                    │
    # │   2. stack (-b, a) on a new last axis            -> (..., d/2, 2)                     │
    # │   3. flatten the last two axes back              -> (..., d)                          │
    # │ Example: [0, 1, 2, 3] -> [-1, 0, -3, 2].                                              │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("rotate_pairs")
    # *****END OF YOUR CODE*****


def apply_rope(x, cos, sin):
    """Rotate x (..., S, hd) by the tables (S, hd): x * cos + rotate_pairs(x) * sin, computed in
    float32 and returned in x's dtype (as the official `apply_rotary_emb`)."""
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x is e.g. (B, nh, S, hd) queries or keys; cos and sin are (S, hd), each angle   │
    # │ repeated for the two channels of its pair, so they broadcast against x.              │
    # │ For one pair (a, b) turned by the angle phi this is                                  │
    # │        (a cos phi - b sin phi,  b cos phi + a sin phi)   — a rotation.               │
    # │ Compute in float32 (x.float()), return in x's dtype (.to(x.dtype)).                  │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
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
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: head_dim not divisible by 4 is a ValueError (two axes, each in pairs).         │
    # │ 1. The box: (top, left), (bottom, right) = rope_crop(th, tw, base_size), or          │
    # │    (0, 0), (th, tw) when base_size is None.                                          │
    # │ 2. Positions on each axis, end excluded (numpy's linspace(start, stop, n,            │
    # │    endpoint=False)):  start + (stop - start) * arange(n) / n                         │
    # │    rows: (th,) from top to bottom; columns: (tw,) from left to right.                │
    # │    Compute them in float64, then cast to float32, as the official numpy code.        │
    # │ 3. Per token (row-major: token r * tw + c): its column position w and row position h │
    # │                                                         -> two (th*tw,)              │
    # │ 4. For one axis with d = head_dim / 2 channels:                                      │
    # │      freqs = 1 / 10000 ** (arange(0, d, 2) / d)         (d/2,) float32               │
    # │      angles = outer(positions, freqs)                   (th*tw, d/2)                 │
    # │      cos, sin of the angles, each repeated for the 2 channels of its pair            │
    # │      (repeat_interleave(2, dim=1))                      (th*tw, d)                   │
    # │ 5. Concatenate [w axis, h axis] on the channels         (th*tw, head_dim) each       │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("get_2d_rope")
    # *****END OF YOUR CODE*****
