"""Sliding-window latent denoising (MultiDiffusion): a model trained at one size, run on a larger latent.

MultiDiffusion (Bar-Tal, Yariv, Lipman and Dekel, arXiv:2302.08113) runs a diffusion model on a latent
larger than the one it was trained on: at every sampling step it cuts x_t into overlapping windows of
the trained size, runs the network on each window as if it were a whole image, and merges the
per-window predictions pixel by pixel:

    out(p) = sum_i w_i(p) f(x_t[window i])(p) / sum_i w_i(p)                       (w_i = 0 outside window i)

With w_i = 1 inside each window this is the paper's closed-form solution of its least-squares fusion of
the windows for the panorama case: a plain per-pixel mean. `WindowedModel` does this to the network OUTPUT, so
it is itself a `model_fn(x, t)` and every sampler of `minidit/samplers.py` runs it unchanged: DDIM,
DPM-Solver++ and Euler steps (and DDPM's mean, with the noise drawn once for the whole latent) are
affine in the model output with the same scalars at every pixel, so stepping the merged output is
the same as stepping every window and merging the results (MultiDiffusion's formulation). The one
exception is a learned variance (DDPM "learned_range"), which enters the step through an exp.

Blending weights (`BLENDS`):
    "uniform"    w = 1: the paper's per-pixel mean.
    "linear"     the VAE tiling's ramps (`tiling.blend_ramp`): rising across the overlap with the
                 previous window, falling across the overlap with the next, 1 elsewhere and at the
                 latent's border; where two windows meet the two ramps are a linear cross-fade.
    "gaussian"   exp(-d^2 / (2 * 0.01 * window^2)) per axis, d the distance to the window's centre: the
                 weights of Mixture of Diffusers (Jimenez, arXiv:2302.02412; its var = 0.01). Near the
                 window's centre it dominates, so the windows hand over sharply in mid-overlap.
The weights are normalised once per latent size (w_i / sum_j w_j, `window_weights`), so they sum to 1
at every pixel; windows are placed as the VAE tiles are (`tiling.tile_starts`: a step of
window - overlap, the last one moved back to end flush with the edge).

What it fixes: the network only ever sees latents of the window's size, so (1) the cost of one
forward, attention included, is that of the trained size; (2) the size-dependent conditioning is
in-distribution: PixArt's sin-cos positions span the trained range (its `pe_interpolation`), SD3
crops the centre of its position table to the window's grid, Hunyuan-DiT's RoPE is the window's
grid, PixArt-α's size micro-condition is the window's — because the model simply receives a
window-sized latent (the pipelines compute each of these from the latent they are given).
What it does NOT fix: global coherence. No window sees the whole picture, so nothing plans the
layout: each window tends to draw the whole prompt (repeated objects: a cactus per window, several
horizons), and lighting or perspective agree only as far as the overlaps carry them. Seams: without
overlap the windows evolve independently and their borders show; overlap and ramps hide the seams
but not a change of content across them. (The usual remedies, not here: generate at the trained
size first and refine an upscaled copy, or mix in dilated, global views of the latent.)

Cost: (number of windows) x (one window-sized forward) per model call. Per axis there are
ceil((L - w) / (w - o)) + 1 windows for a latent side L, window w and overlap o (`window_grid`):
e.g. a 4096^2 image (latent 512) from 2048^2 windows (latent 256) is 2 x 2 = 4 windows without
overlap, 3 x 3 = 9 with an overlap of 64 latent px. The linear layers' cost grows with the total token
count (n * tokens per window >= the latent's tokens, more with overlap); attention, quadratic in
the tokens of ONE forward, shrinks: n (T / n')^2 instead of T^2. Peak memory is set by one forward of
`windows_per_call` windows, plus the full-size output accumulator (B x C x H x W, small).

Windows per call: `windows_per_call=k` stacks k windows into one network call of batch k * B,
window-major (sample j * B + b is window j of sample b), with t tiled the same way. The model_fn must
then accept a batch that is k times its own: tile every batch-B conditioning tensor with
`tile_batch` (the pipelines do). With k = 1 any model_fn works as it is.

Shape legend: B batch, C channels, H W latent size, wh ww window size, n windows, k windows per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError
from .tiling import blend_ramp, tile_overlaps, tile_starts

BLENDS = ("uniform", "linear", "gaussian")
GAUSSIAN_VAR = 0.01            # Mixture of Diffusers' variance, in units of the window's size squared


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _pair(value, name: str) -> tuple[int, int]:
    """An int or a (height, width) pair of positive ints -> (height, width)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _int(value[0], f"{name}[0]", 1), _int(value[1], f"{name}[1]", 1)
    v = _int(value, name, 1) if not isinstance(value, (tuple, list)) else None
    if v is None:
        raise InputError(f"{name} must be an integer or a (height, width) pair, got {value!r}")
    return v, v


def check_window_options(window, overlap: int = 0, *, blend: str = "linear", windows_per_call: int = 1,
                         patch: int = 1) -> tuple[tuple[int, int], int]:
    """Check the options that do not depend on the latent's size; returns ((wh, ww), overlap)."""
    wh, ww = _pair(window, "window")
    overlap = _int(overlap, "window overlap", 0)
    patch = _int(patch, "patch", 1)
    if blend not in BLENDS:
        raise InputError(f"unknown window blend {blend!r}: one of {', '.join(BLENDS)}")
    _int(windows_per_call, "windows_per_call", 1)
    if wh % patch or ww % patch:
        raise InputError(f"window {wh}x{ww} (latent px) is not a multiple of the patch size {patch}: the windows "
                         "must cut the latent along patch borders; use a multiple of it")
    if overlap % patch:
        raise InputError(f"window overlap {overlap} (latent px) is not a multiple of the patch size {patch}: "
                         "the windows must start on patch borders; use a multiple of it")
    if overlap >= min(wh, ww):
        raise InputError(f"window overlap {overlap} must be smaller than the window {wh}x{ww} (latent px): the "
                         f"windows step by window - overlap")
    return (wh, ww), overlap


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows of one latent size lie: every (ys[i], xs[j]) is a window's top-left corner."""
    size: tuple[int, int]              # the latent's (H, W)
    window: tuple[int, int]            # (wh, ww)
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def boxes(self) -> list[tuple[int, int]]:
        """Top-left corners, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def coverage(self) -> torch.Tensor:
        """(H, W): how many windows cover each pixel."""
        count = torch.zeros(self.size, dtype=torch.int32)
        for y, x in self.boxes:
            count[y:y + self.window[0], x:x + self.window[1]] += 1
        return count


def window_grid(height: int, width: int, window, overlap: int = 0, *, patch: int = 1) -> WindowGrid:
    """The windows of size `window` (int or (wh, ww), latent px) overlapping by `overlap` that cover an
    height x width latent (`tiling.tile_starts`: the last window ends flush with the edge).
    InputError for a window larger than the latent, an overlap >= window, sizes off the patch grid."""
    (wh, ww), overlap = check_window_options(window, overlap, patch=patch)
    height, width = _int(height, "latent height", 1), _int(width, "latent width", 1)
    if wh > height or ww > width:
        raise InputError(f"window {wh}x{ww} is larger than the {height}x{width} latent: pass a window no larger "
                         "than the latent (a (height, width) pair for a thin latent), or denoise without windows")
    if height % patch or width % patch:
        raise InputError(f"latent {height}x{width} is not a multiple of the patch size {patch}")
    return WindowGrid((height, width), (wh, ww), overlap, tuple(tile_starts(height, wh, overlap)),
                      tuple(tile_starts(width, ww, overlap)))


def _raw_weights(grid: WindowGrid, blend: str) -> list[torch.Tensor]:
    """Unnormalised weights, one (wh, ww) float64 tensor per window (row by row)."""
    (wh, ww) = grid.window
    if blend == "uniform":
        return [torch.ones(wh, ww, dtype=torch.float64)] * len(grid)
    if blend == "gaussian":
        def bell(n):
            d = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / n
            return torch.exp(-d * d / (2 * GAUSSIAN_VAR))
        return [bell(wh)[:, None] * bell(ww)[None, :]] * len(grid)
    if blend != "linear":
        raise InputError(f"unknown window blend {blend!r}: one of {', '.join(BLENDS)}")
    rows = [blend_ramp(wh, a, b).double() for a, b in tile_overlaps(list(grid.ys), wh)]
    cols = [blend_ramp(ww, a, b).double() for a, b in tile_overlaps(list(grid.xs), ww)]
    return [r[:, None] * c[None, :] for r in rows for c in cols]


def window_weights(grid: WindowGrid, blend: str = "linear") -> torch.Tensor:
    """(n, wh, ww) float64: each window's blending weights divided by the sum over all windows at that
    pixel, so that at every pixel of the latent the weights of the windows covering it sum to 1."""
    raw = _raw_weights(grid, blend)
    (wh, ww), total = grid.window, torch.zeros(grid.size, dtype=torch.float64)
    for (y, x), w in zip(grid.boxes, raw):
        total[y:y + wh, x:x + ww] += w
    return torch.stack([w / total[y:y + wh, x:x + ww] for (y, x), w in zip(grid.boxes, raw)])


def tile_batch(tensor, batch: int, what: str = "conditioning"):
    """A batch-b conditioning tensor repeated to `batch` = k * b rows, as `WindowedModel` stacks k
    windows (window-major: row j * b + i is window j of sample i). None stays None."""
    if tensor is None or tensor.shape[0] == batch:
        return tensor
    if batch % tensor.shape[0]:
        raise InputError(f"{what} has {tensor.shape[0]} rows, which do not tile a batch of {batch}")
    return tensor.repeat(batch // tensor.shape[0], *([1] * (tensor.ndim - 1)))


class WindowedModel:
    """model_fn(x, t) on overlapping windows of x, merged: a model_fn for any sampler (module docstring).

        windowed = WindowedModel(model_fn, window=128, overlap=32, blend="linear", patch=2)
        x0 = sampler.run(windowed, x_T, 20)              # x_T: (B, C, 256, 256) latents
        windowed.calls, windowed.evaluations              # network calls, windows evaluated

    window: int or (wh, ww), latent px; overlap: latent px; blend: one of BLENDS; windows_per_call: k
    windows per network call (see `tile_batch`); patch: the model's patch size (windows and overlap
    must be multiples of it). The options are checked here, the window against the latent at the first
    call (or with `grid(H, W)`), all before any network call. A latent that is one window is computed
    exactly as model_fn(x, t) (the same call, weights of exactly 1).
    """

    def __init__(self, model_fn, window, overlap: int = 0, *, blend: str = "linear", windows_per_call: int = 1,
                 patch: int = 1):
        self.window, self.overlap = check_window_options(window, overlap, blend=blend,
                                                         windows_per_call=windows_per_call, patch=patch)
        self.model_fn, self.blend, self.windows_per_call, self.patch = model_fn, blend, windows_per_call, patch
        self.calls = 0                   # network calls (model_fn calls)
        self.evaluations = 0             # windows evaluated, over all calls
        self._cache: dict = {}

    def grid(self, height: int, width: int) -> WindowGrid:
        if (height, width) not in self._cache:
            grid = window_grid(height, width, self.window, self.overlap, patch=self.patch)
            self._cache[(height, width)] = grid, window_weights(grid, self.blend)
        return self._cache[(height, width)][0]

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, H, W = x.shape[0], *x.shape[-2:]
        grid = self.grid(H, W)
        weights = self._cache[(H, W)][1]                                        # (n, wh, ww)
        (wh, ww), boxes, k = grid.window, grid.boxes, self.windows_per_call
        out = pred = None
        for first in range(0, len(boxes), k):
            chunk = boxes[first:first + k]
            xs = torch.cat([x[..., y:y + wh, x0:x0 + ww] for y, x0 in chunk])   # (len(chunk) * B, C, wh, ww)
            ts = t.repeat(len(chunk)) if t.ndim == 1 else t
            pred = self.model_fn(xs, ts)                                        # (len(chunk) * B, C_out, wh, ww)
            self.calls += 1
            if pred.shape[0] != len(chunk) * B or pred.shape[-2:] != (wh, ww):
                raise ValueError(f"model_fn turned {len(chunk) * B} windows of {wh}x{ww} into {tuple(pred.shape)}: "
                                 "it must keep the batch and the spatial size")
            if out is None:
                dtype = torch.promote_types(pred.dtype, torch.float32)
                out = torch.zeros(B, pred.shape[1], H, W, dtype=dtype, device=pred.device)
                weights = weights.to(device=pred.device, dtype=dtype)
            for j, (y, x0) in enumerate(chunk):
                out[..., y:y + wh, x0:x0 + ww] += pred[j * B:(j + 1) * B].to(out.dtype) * weights[first + j]
        self.evaluations += len(boxes)
        return out.to(pred.dtype)

    def stats(self, height: int, width: int) -> dict:
        """What a pipeline records (sizes in latent px): the windows covering the latent, and the counts so far."""
        grid = self.grid(height, width)
        return dict(window_latent=f"{grid.window[0]}x{grid.window[1]}", window_overlap_latent=grid.overlap,
                    window_blend=self.blend,
                    windows=len(grid), windows_per_call=self.windows_per_call, forward_calls=self.calls,
                    window_evaluations=self.evaluations)
