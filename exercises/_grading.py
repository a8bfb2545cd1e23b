"""Shared helpers for the exercise graders.

A student edits an exercise stub (e.g. `exercises/ex01_patchify.py`) and runs its grader:

    python -m pytest exercises/test_ex01_patchify.py

Each stub names the minidit reference of every function/class it asks for in `REFERENCE`. With
`MINIDIT_EXERCISE_TARGET=reference` the graders grade minidit itself instead of the stubs; CI does
that (every grader must pass) and also grades the untouched stubs (every grader test must fail),
see `tests/test_exercises.py`, and typical wrong solutions (each must fail with a message naming the
mistake: `check_close(..., mistakes=...)` below), see `tests/test_exercise_mutants.py`.
"""
from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

import torch

TARGET_ENV = "MINIDIT_EXERCISE_TARGET"


def load(exercise: str) -> SimpleNamespace:
    """The code to grade for `exercise` (e.g. "ex01_patchify"): the student's stub by default,
    minidit's reference implementation when MINIDIT_EXERCISE_TARGET=reference."""
    stub = importlib.import_module(f"exercises.{exercise}")
    target = os.environ.get(TARGET_ENV, "stub")
    if target == "stub":
        return SimpleNamespace(**{name: getattr(stub, name) for name in stub.REFERENCE})
    if target == "reference":
        found = {}
        for name, path in stub.REFERENCE.items():
            module, attr = path.split(":")
            found[name] = getattr(importlib.import_module(module), attr)
        return SimpleNamespace(**found)
    raise ValueError(f"{TARGET_ENV} must be 'stub' or 'reference', not {target!r}")


def check_shape(actual, expected, what: str) -> None:
    """Fail with a friendly message when a tensor has the wrong shape (checked before values)."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(expected):
        got, want = tuple(actual.shape), tuple(expected)
        hint = "Check the reshape/permute steps against the shapes in the TODO box."
        if len(got) == len(want) >= 2 and got[:-2] + got[-2:][::-1] == want:
            hint = "The last two sizes are swapped: did you mix up height and width (h and w)?"
        raise AssertionError(f"{what} has shape {got}, expected {want}. {hint}")


# The tolerance policy of tests/helpers/parity.py (the exercises do not import tests/): a difference
# is compared with the scale of the expected output, max(1, max |expected|), in float64. Rounding
# errors grow with the size of the numbers that were summed, not with each output element, so a
# near-zero element may be off as much as its large neighbours; another CPU (another BLAS kernel)
# rounds differently, and a per-element bound would fail there.
EXACT = 0.0
FP32_ELEMENTWISE = 1e-6     # a few float32 operations, no long sums
FP32 = 1e-5                 # float32, the same algorithm in another order (matmuls, reductions)
FP32_OTHER_KERNEL = 1e-4    # float32 through another library's implementation (diffusers)


def check_close(actual, expected, what: str, tol: float = FP32, scale: float | None = None,
                mistakes: dict | None = None) -> None:
    """Compare values after the shape check: the largest |actual - expected| must be at most
    tol * scale, scale = max(1, max |expected|) unless given (a hand-derived small value whose
    relative precision is the point passes its own size). Says where the largest difference is.

    `mistakes` maps a hint to what a known wrong solution would output ({"you put sin first": ...}):
    when the values are wrong and match one of those, the hint names the mistake."""
    check_shape(actual, expected.shape, what)
    a, e = actual.detach().double(), expected.detach().double()
    if mistakes and not _close(a, e, tol, scale):
        for hint, wrong in mistakes.items():
            w = wrong.detach().double()
            if tuple(w.shape) == tuple(a.shape) and _close(a, w, max(tol, FP32), scale):
                raise AssertionError(f"{what}: wrong values. {hint}")
    if scale is None:
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    if not torch.isfinite(a).all():
        raise AssertionError(f"{what}: your output contains NaN or inf")
    diff = (a - e).abs()
    if diff.numel() and not diff.max().item() <= tol * scale:
        i = int(diff.flatten().argmax())
        idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), diff.shape)) if diff.dim() else ()
        raise AssertionError(f"{what}: wrong values; largest difference {diff.max().item():.3g} at index {idx} "
                             f"(got {a.flatten()[i].item():.7g}, expected {e.flatten()[i].item():.7g}); "
                             f"allowed: {tol:g} x scale {scale:.3g} = {tol * scale:.3g}")


def _close(a, e, tol, scale) -> bool:
    if scale is None:
        scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    return bool(torch.isfinite(a).all()) and (not a.numel() or (a - e).abs().max().item() <= tol * scale)


def check_raises(error: type, fn, what: str) -> None:
    """`fn()` must raise `error` (e.g. a ValueError for a bad size), not another exception, not nothing."""
    try:
        fn()
    except error:
        return
    except Exception as e:              # e.g. reshape's RuntimeError: the input was not checked first
        raise AssertionError(f"expected a {error.__name__} for {what}, got {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:150] if str(e) else ''}. Check the input and raise "
                             f"{error.__name__} yourself before computing.") from None
    raise AssertionError(f"expected a {error.__name__} for {what}, but nothing was raised")


def require(module: str, install: str):
    """`import module` for a check against an independent implementation, or fail this check (not the
    others) saying what to install: the graders need only the runtime requirements and pytest."""
    import pytest
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = e                       # fail outside the except block: no chained ImportError traceback
    pytest.fail(f"this check compares against {module}, which is not installed ({error}). Install it with "
                f"`pip install {install}` (or all dev requirements: `pip install -r requirements-dev.txt`).",
                pytrace=False)


def copy_weights(reference: torch.nn.Module, student: torch.nn.Module) -> None:
    """Give the student's module the reference's weights, so initialisation order cannot matter."""
    missing, unexpected = student.load_state_dict(reference.state_dict(), strict=False)
    if missing or unexpected:
        raise AssertionError(f"your module's parameters do not match the reference: missing {missing}, "
                             f"unexpected {unexpected}. Keep the parameter names the stub created.")
