"""One tolerance policy for comparing minidit with an oracle (diffusers, transformers, open_clip, a
formula written out by hand).

    assert_parity(ours, theirs, tol=FP32, what="T5 last_hidden_state")

passes when, computed in float64,

    max |actual - expected|  <=  tol * scale,      scale = max(1, max |expected|)

Why this form:

* The bound is relative to the scale of the OUTPUT, not to each element. Floating-point error comes
  from the sums and products that made the output (a matmul's rounding grows with the magnitude of
  what it accumulates), so an element that happens to be near zero (a cancellation) carries the same
  absolute error as its large neighbours. An elementwise `atol + rtol * |expected|` bound is tightest
  exactly there, and that is where another CPU's BLAS kernel (AVX2 vs AVX-512 blocking, another
  summation order) fails it by one element: all-MiniLM's 38 400 hidden-state values once exceeded
  `atol=rtol=1e-5` by 1.26e-5 in one place. The largest |expected| is a robust scale (an RMS would
  let a few large outlier channels -- BERT has them -- hide behind the many small values).
* The floor of 1 keeps an absolute bound for outputs smaller than their O(1) inputs (a zero
  output, a small difference of large terms): the inputs of every test are O(1).
* The comparison is in float64, so the check itself adds no rounding.

Shapes and dtypes must match exactly (cast explicitly, e.g. `.float()`, when a comparison across
dtypes is intended), and a NaN anywhere, or an inf that the other side does not have, fails.

The levels -- pick the one that says WHY the two sides may differ, never a per-test number:

    EXACT              0     bit-identical: the same operations in the same order (a cache, a
                             reshape, a loader that must not change a value). Prefer torch.equal for
                             integer ids.
    FP32_ELEMENTWISE   1e-6  float32, a few elementwise operations and no long reduction (sin/cos
                             tables, blending weights, a formula with a handful of terms).
    FP32               1e-5  float32, the same algorithm written independently: the other side fuses,
                             orders or splits the matmuls and reductions differently (a module vs
                             diffusers/transformers at tiny size, SDPA vs the explicit softmax).
    FP32_OTHER_KERNEL  1e-4  float32 through deep stacks or different kernels: full-size or real
                             weights (DiT-XL/2, SD3's CLIPs, the 84 M VAE), convolutions in another
                             library's layout, where errors of 1e-5 compound over many layers.
    FP16               2e-2  float16 vs float32 or vs another float16 implementation (10-bit mantissa,
                             eps 1e-3: ~20 eps, errors accumulated over a network).
    BF16               1e-1  bfloat16 vs float32 or vs another bfloat16 implementation (7-bit
                             mantissa, eps 8e-3: ~13 eps; CPUs with native bf16 dot products round
                             differently from those that convert to float32).

Measured on an AMD EPYC (AVX-512) with torch 2.13: every FP32 check uses at most 1/10 of its bound
(all-MiniLM's real weights: 1/10; the tiny models ~1/25), FP32_OTHER_KERNEL at most 1/30, FP16 1/16,
BF16 1/7, FP32_ELEMENTWISE 1/6: room for another CPU's kernels, and far below what a real mistake
gives (a wrong op, a swapped weight or a missed mask is off by O(1)).

A failure names the largest difference, where it is, both values there, the scale and the bound.
"""
from __future__ import annotations

import torch

EXACT = 0.0
FP32_ELEMENTWISE = 1e-6
FP32 = 1e-5
FP32_OTHER_KERNEL = 1e-4
FP16 = 2e-2
BF16 = 1e-1

LEVELS = {"EXACT": EXACT, "FP32_ELEMENTWISE": FP32_ELEMENTWISE, "FP32": FP32, "FP32_OTHER_KERNEL": FP32_OTHER_KERNEL,
          "FP16": FP16, "BF16": BF16}


def _level_name(tol: float) -> str:
    return next((name for name, value in LEVELS.items() if value == tol), f"tol={tol:g}")


def _index(flat: int, shape) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), tuple(shape))) if len(shape) else ()


def assert_parity(actual: torch.Tensor, expected: torch.Tensor, *, tol: float = FP32, what: str = "",
                  scale: float | None = None) -> None:
    """Fail unless `actual` matches the oracle's `expected` within `tol` times the scale of `expected`
    (see the module docstring for the policy and the levels). `scale` replaces max(1, max|expected|)
    where the values are much smaller than 1 and their own relative precision is the point (a beta
    schedule of 1e-4..2e-2): pass their size, e.g. `scale=expected.abs().max()`."""
    label = f"{what}: " if what else ""
    for name, t in (("actual", actual), ("expected", expected)):
        if not isinstance(t, torch.Tensor):
            raise AssertionError(f"{label}{name} should be a torch.Tensor, got {type(t).__name__}")
    if actual.shape != expected.shape:
        raise AssertionError(f"{label}shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{label}dtype {actual.dtype} != expected {expected.dtype} "
                             "(cast one side explicitly if comparing across dtypes is intended)")
    if actual.numel() == 0:
        return
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    finite_a, finite_e = torch.isfinite(a), torch.isfinite(e)
    odd = ~(finite_a & finite_e)
    if odd.any():
        mismatch = odd & ~(a == e)                      # NaN never equals; an inf must be the same inf
        if mismatch.any():
            i = int(mismatch.flatten().nonzero()[0])
            raise AssertionError(f"{label}{int(mismatch.sum())} non-finite values differ, first at index "
                                 f"{_index(i, a.shape)}: actual {a.flatten()[i].item()}, expected "
                                 f"{e.flatten()[i].item()}")
        a, e = a[~odd], e[~odd]
        if a.numel() == 0:
            return
    diff = (a - e).abs()
    scale = max(1.0, e.abs().max().item()) if scale is None else float(scale)
    bound = tol * scale
    worst = diff.max().item()
    if worst <= bound:
        return
    i = int(diff.flatten().argmax())
    where = _index(i, actual.shape) if not odd.any() else f"{i} (of the finite values)"
    raise AssertionError(
        f"{label}max |actual - expected| = {worst:.3g} at index {where} (actual {a.flatten()[i].item():.7g}, "
        f"expected {e.flatten()[i].item():.7g}) > {_level_name(tol)} {tol:g} x scale {scale:.4g} = {bound:.3g}; "
        f"{int((diff > bound).sum())} of {diff.numel()} elements exceed it "
        "(scale = max(1, max|expected|); tests/helpers/parity.py explains the levels)")
