"""Exercise 7 — tiled decoding with linear blending (chapter 04_latent_space).

Decoding a 2048^2 image in one go holds several 128 x 2048 x 2048 activations at once. Instead,
run the decoder on overlapping tiles and cross-fade them where they overlap:

    out(p) = sum_i w_i(p) * fn(tile_i)(p) / sum_i w_i(p)

Write the 1-D blending ramp and the tiled loop, then check yourself:

    python -m pytest exercises/test_ex07_tile_blending.py
"""
import torch

from minidit.tiling import tile_starts  # noqa: F401  (given: where the tiles start along one axis)

# The minidit functions these stubs re-implement (used by CI to check the grader itself).
REFERENCE = {"blend_ramp": "minidit.tiling:blend_ramp", "tiled_apply": "minidit.tiling:tiled_apply"}


def blend_ramp(size: int, left: int, right: int) -> torch.Tensor:
    """1-D blending weights of a tile of `size` pixels that overlaps its neighbours by `left` and
    `right` pixels (0 = no neighbour on that side): min(1, (x+1)/(left+1), (size-x)/(right+1))."""
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: return a float32 tensor of shape (size,):                                       │
    # │   * 1 everywhere to start with;                                                       │
    # │   * if left > 0, rise linearly over the first `left` pixels: (x + 1) / (left + 1);     │
    # │   * if right > 0, fall linearly over the last `right` pixels: (size - x) / (right + 1);│
    # │   * take the minimum of whatever applies.                                             │
    # │ Check: blend_ramp(6, 2, 0) = [1/3, 2/3, 1, 1, 1, 1]. Where two tiles overlap by n      │
    # │ pixels, the falling ramp of one and the rising ramp of the other sum to exactly 1.    │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("blend_ramp")
    # *****END OF YOUR CODE*****


def tiled_apply(fn, x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """`fn(x)` computed tile by tile: (B, C, H, W) -> (B, C_out, H*scale, W*scale), blended.

    `tile` and `overlap` are in input pixels; `scale` = output size / input size (8 for a decoder).
    An input no larger than one tile must give exactly fn(x).
    """
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO:                                                                                 │
    # │   0. if H <= tile and W <= tile: return fn(x)                                         │
    # │   1. th, tw = min(tile, H), min(tile, W); ys = tile_starts(H, tile, overlap), same xs │
    # │   2. for each tile (y0, x0):                                                          │
    # │        piece = fn(x[..., y0:y0+th, x0:x0+tw])      -> (B, C_out, th*scale, tw*scale)  │
    # │        its overlap with the previous / next tile along y: ys[i-1] + th - ys[i] and    │
    # │        ys[i] + th - ys[i+1] (0 at the ends); same along x; multiply them by `scale`   │
    # │        w = blend_ramp(rows, top, bottom)[:, None] * blend_ramp(cols, left, right)[None]│
    # │        accumulate piece * w into `out` and w into `weight_sum` at (y0*scale, x0*scale)│
    # │      (allocate out = zeros(B, C_out, H*scale, W*scale) once you know C_out)           │
    # │   3. return out / weight_sum                                                          │
    # │ Use int(round(n * scale)) for every size/offset in output pixels.                     │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("tiled_apply")
    # *****END OF YOUR CODE*****
