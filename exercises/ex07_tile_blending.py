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
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: return a float32 tensor of shape (size,):                                            │
    # │   * 1 everywhere to start with;                                                            │
    # │   * if left > 0, rise linearly over the first `left` pixels: (x + 1) / (left + 1);         │
    # │   * if right > 0, fall linearly over the last `right` pixels: (size - x) / (right + 1);    │
    # │   * take the minimum of whatever applies.                                                  │
    # │ Check: blend_ramp(6, 2, 0) = [1/3, 2/3, 1, 1, 1, 1]. Where two tiles overlap by n          │
    # │ pixels, the falling ramp of one and the rising ramp of the other sum to exactly 1.         │
    # │ Read first: chapters/04_latent_space.ipynb, section                                        │
    # │   - Tiled decoding and its seams                                                           │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("blend_ramp")
    # *****END OF YOUR CODE*****


def tiled_apply(fn, x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """`fn(x)` computed tile by tile: (B, C, H, W) -> (B, C_out, H*scale, W*scale), blended.

    `tile` and `overlap` are in input pixels; `scale` = output size / input size (8 for a decoder).
    An input no larger than one tile must give exactly fn(x).
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: (B, C, H, W) -> (B, C_out, H*scale, W*scale)                                         │
    # │   0. an input no larger than one tile: return fn(x) itself (no blending at all)            │
    # │   1. tiles of th x tw = min(tile, H) x min(tile, W) input pixels, starting at the rows     │
    # │      tile_starts(H, tile, overlap) and the columns tile_starts(W, tile, overlap)           │
    # │   2. each tile through fn                          -> (B, C_out, th*scale, tw*scale)       │
    # │      weighted by (a ramp along its rows) x (a ramp along its columns), each ramp set       │
    # │      by the tile's overlap with its previous and its next neighbour on that axis           │
    # │      (0 at the image's edges), measured in OUTPUT pixels       -> (th*scale, tw*scale)     │
    # │   3. at each tile's place in the output, sum the weighted tiles and, separately, the       │
    # │      weights; return the first divided by the second (the module docstring's formula)      │
    # │ Use int(round(n * scale)) for every size/offset in output pixels.                          │
    # │ Read first: chapters/04_latent_space.ipynb, section                                        │
    # │   - Tiled decoding and its seams                                                           │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("tiled_apply")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# blend_ramp
# ----------
#     x = torch.arange(size, dtype=torch.float32)
#     w = torch.ones(size)
#     if left:
#         w = torch.minimum(w, (x + 1) / (left + 1))
#     if right:
#         w = torch.minimum(w, (size - x) / (right + 1))
#     return w
# Why the +1s: with n overlapping pixels, one tile's falling weights there are n/(n+1), ..., 1/(n+1) and
# the next tile's rising weights are 1/(n+1), ..., n/(n+1): each pixel's two weights sum to 1, and no
# weight is 0 (x / left would give the first pixel weight 0, wasting it). The minimum handles a tile
# with both neighbours, and a ramp of 1s stays where there is no neighbour, so the image's borders are
# never faded.
#
# tiled_apply
# -----------
#     H, W = x.shape[-2:]
#     if H <= tile and W <= tile:
#         return fn(x)
#     th, tw = min(tile, H), min(tile, W)
#     ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
#     s = lambda n: int(round(n * scale))                                   # input -> output pixels
#     def overlaps(starts, size):          # (with the previous tile, with the next), 0 at the ends
#         return [(starts[i - 1] + size - starts[i] if i > 0 else 0,
#                  starts[i] + size - starts[i + 1] if i < len(starts) - 1 else 0)
#                 for i in range(len(starts))]
#     out = weight_sum = None
#     for y0, (top, bottom) in zip(ys, overlaps(ys, th)):
#         wy = blend_ramp(s(th), s(top), s(bottom))                          # (th*scale,)
#         for x0, (left, right) in zip(xs, overlaps(xs, tw)):
#             wx = blend_ramp(s(tw), s(left), s(right))                      # (tw*scale,)
#             piece = fn(x[..., y0:y0 + th, x0:x0 + tw])                     # (B, C_out, th*s, tw*s)
#             if out is None:                                                # C_out is known now
#                 out = torch.zeros(*piece.shape[:2], s(H), s(W))
#                 weight_sum = torch.zeros(s(H), s(W))
#             w = wy[:, None] * wx[None, :]                                  # (th*s, tw*s)
#             out[..., s(y0):s(y0) + len(wy), s(x0):s(x0) + len(wx)] += piece * w
#             weight_sum[s(y0):s(y0) + len(wy), s(x0):s(x0) + len(wx)] += w
#     return out / weight_sum
# Why:
# * the early return makes a small input bit-identical to the untiled fn(x): no blending, no rounding.
# * tile_starts moves the last tile back so that it ends at the border: every tile has the full size,
#   and the last overlap may be larger than `overlap`; that is why each overlap is computed from the
#   actual starts (start_prev + size - start) and not taken as `overlap`.
# * fn works in output pixels (a decoder turns 1 latent pixel into 8x8 image pixels), so the ramps and
#   the positions are scaled; C_out is only known after the first call, hence the lazy allocation.
# * a 2-D weight is the product of two 1-D ramps, so it fades along both axes; dividing by weight_sum
#   makes the weights of every output pixel sum to 1 (exactly where ramps overlap, and also at corners
#   where four tiles meet), so a constant image comes back constant.
