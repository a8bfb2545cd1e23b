"""Tiled encode/decode: run a network on overlapping tiles and blend them linearly.

A VAE decoder's activations grow with the image: at 2048^2 output its last level holds
128 channels x 2048 x 2048 floats (2 GiB in fp32) several times over, and the mid-block attention
sees 65 536 tokens. Running it on tiles bounds the peak memory by the tile size; the price is that
each tile sees only its own neighbourhood (GroupNorm statistics, attention and the convolutions'
receptive field stop at the tile border), so neighbouring tiles disagree a little. Overlapping the
tiles and cross-fading them hides the seams:

    out(p) = sum_i w_i(p) f(x_i)(p) / sum_i w_i(p)

with separable weights w_i = ramp_y * ramp_x that rise linearly across the overlap with the previous
tile and fall across the overlap with the next one (1 in the interior, and at the image border). Where
two tiles overlap by n pixels the two ramps are k/(n+1) and (n+1-k)/(n+1): they sum to 1, so this is
exactly the linear blend of diffusers' `blend_v`/`blend_h`; the division by sum_i w_i keeps it a convex
combination even where the last tile, shifted to end at the border, overlaps more than two tiles.

An input no larger than one tile is passed to `fn` unchanged: tiling then gives exactly the
untiled result. Sizes: `tile` and `overlap` are in INPUT pixels (latent pixels for a decoder, image
pixels for an encoder); `scale` is output size / input size (8 for a decoder, 1/8 for an encoder).
diffusers' defaults: 512 px image tiles (64 latent), overlap factor 0.25.
"""
from __future__ import annotations

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), stepping by tile - overlap.

    The last tile is moved back to end exactly at `length`, so no tile is cut short.
    >>> tile_starts(10, 4, 2)
    [0, 2, 4, 6]
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile): got tile {tile}, overlap {overlap}")
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


def blend_ramp(size: int, left: int, right: int) -> torch.Tensor:
    """1-D blending weights of a tile of `size` pixels that overlaps its neighbours by `left` and
    `right` pixels (0 = no neighbour on that side): min(1, (x+1)/(left+1), (size-x)/(right+1))."""
    x = torch.arange(size, dtype=torch.float32)
    w = torch.ones(size)
    if left:
        w = torch.minimum(w, (x + 1) / (left + 1))
    if right:
        w = torch.minimum(w, (size - x) / (right + 1))
    return w                                                               # (size,)


def tile_overlaps(starts: list[int], size: int) -> list[tuple[int, int]]:
    """(overlap with the previous tile, overlap with the next tile) for each start of tiles of `size`.
    >>> tile_overlaps([0, 2, 4, 6], 4)
    [(0, 2), (2, 2), (2, 2), (2, 0)]
    """
    n = len(starts)
    return [(starts[i - 1] + size - starts[i] if i > 0 else 0,
             starts[i] + size - starts[i + 1] if i < n - 1 else 0) for i in range(n)]


def _scaled(n: int, scale: float) -> int:
    m = n * scale
    if abs(m - round(m)) > 1e-9:
        raise ValueError(f"{n} pixels times scale {scale} is not a whole number of output pixels")
    return int(round(m))


def tiled_apply(fn, x: torch.Tensor, tile: int, overlap: int, scale: float) -> torch.Tensor:
    """`fn(x)` computed tile by tile: (B, C, H, W) -> (B, C_out, H*scale, W*scale), blended."""
    H, W = x.shape[-2:]
    if H <= tile and W <= tile:
        return fn(x)                                    # one tile: exactly the untiled computation
    th, tw = min(tile, H), min(tile, W)
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    out = weight_sum = None
    for y0, (top, bottom) in zip(ys, tile_overlaps(ys, th)):
        wy = blend_ramp(_scaled(th, scale), _scaled(top, scale), _scaled(bottom, scale))
        for x0, (left, right) in zip(xs, tile_overlaps(xs, tw)):
            wx = blend_ramp(_scaled(tw, scale), _scaled(left, scale), _scaled(right, scale))
            piece = fn(x[..., y0:y0 + th, x0:x0 + tw])                    # (B, C_out, th*s, tw*s)
            if piece.shape[-2:] != (len(wy), len(wx)):
                raise ValueError(f"fn turned a {th}x{tw} tile into {tuple(piece.shape[-2:])}, "
                                 f"not {len(wy)}x{len(wx)} (scale {scale})")
            if out is None:
                out = torch.zeros(*piece.shape[:2], _scaled(H, scale), _scaled(W, scale),
                                  dtype=torch.float32, device=piece.device)
                weight_sum = torch.zeros(out.shape[-2:], dtype=torch.float32, device=piece.device)
            w = (wy[:, None] * wx[None, :]).to(piece.device)                # (th*s, tw*s)
            Y, X = _scaled(y0, scale), _scaled(x0, scale)
            out[..., Y:Y + len(wy), X:X + len(wx)] += piece.float() * w
            weight_sum[Y:Y + len(wy), X:X + len(wx)] += w
    return out.div_(weight_sum).to(piece.dtype)
