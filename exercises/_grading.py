"""Shared helpers for the exercise graders.

A student edits an exercise stub (e.g. `exercises/ex01_patchify.py`) and runs its grader:

    python -m pytest exercises/test_ex01_patchify.py

Each stub names the minidit reference of every function/class it asks for in `REFERENCE`. With
`MINIDIT_EXERCISE_TARGET=reference` the graders grade minidit itself instead of the stubs; CI does
that (every grader must pass) and also grades the untouched stubs (every grader test must fail),
see `tests/test_exercises.py`.
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
        raise AssertionError(f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected)}. "
                             "Check the reshape/permute steps against the shapes in the TODO box.")


def check_close(actual, expected, what: str, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Compare values after the shape check, saying where the largest difference is."""
    check_shape(actual, expected.shape, what)
    if not torch.allclose(actual.float(), expected.float(), atol=atol, rtol=rtol):
        diff = (actual.float() - expected.float()).abs()
        idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        raise AssertionError(f"{what}: wrong values; largest difference {diff.max().item():.3g} at index {idx} "
                             f"(got {actual.flatten()[diff.argmax()].item():.5g}, "
                             f"expected {expected.flatten()[diff.argmax()].item():.5g})")


def copy_weights(reference: torch.nn.Module, student: torch.nn.Module) -> None:
    """Give the student's module the reference's weights, so initialisation order cannot matter."""
    missing, unexpected = student.load_state_dict(reference.state_dict(), strict=False)
    if missing or unexpected:
        raise AssertionError(f"your module's parameters do not match the reference: missing {missing}, "
                             f"unexpected {unexpected}. Keep the parameter names the stub created.")
