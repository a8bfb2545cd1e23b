"""Importing the test-only parity oracles (diffusers, transformers, ...).

They are part of the test suite's contract (requirements-dev.txt), so a missing one is a failure
with the install command, never a skip: a skipped parity test would let CI pass without checking
anything. (Skips are only for real absences: downloaded checkpoints, MINIDIT_WEIGHTS.)
"""
import importlib

import pytest

INSTALL_HINT = ("install the dev requirements: pip install -r requirements-dev.txt && "
                "pip install --no-deps open_clip_torch==3.3.0")


def require(module: str):
    """`import module`, or fail (at collection time, too) saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = e                       # fail outside the except block: no chained ImportError traceback
    pytest.fail(f"{module} is missing ({error}): {INSTALL_HINT}", pytrace=False)
