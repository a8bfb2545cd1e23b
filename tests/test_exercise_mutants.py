"""Every exercise grader fails on plausible wrong solutions, with a message naming the mistake.

tests/test_exercises.py shows that each grader passes on minidit's reference and fails on the
untouched stub. That says nothing about a wrong answer: here each grader runs (in this process,
its `ex` namespace replaced) against the mutants of tests/helpers/mutants/ — the reference with one
function or class swapped for a typical mistake — and must fail with a message that contains the
mutant's fragment.
"""
import importlib
import itertools
import pkgutil
from types import SimpleNamespace

import pytest
import torch

from exercises import _grading
from helpers import mutants

EXERCISES = sorted(m.name for m in pkgutil.iter_modules(mutants.__path__))
CASES = [(exercise, m) for exercise in EXERCISES
         for m in importlib.import_module(f"helpers.mutants.{exercise}").MUTANTS]


def _reference(exercise: str) -> dict:
    stub = importlib.import_module(f"exercises.{exercise}")
    found = {}
    for name, path in stub.REFERENCE.items():
        module, attr = path.split(":")
        found[name] = getattr(importlib.import_module(module), attr)
    return found


def _calls(fn):
    """The argument sets pytest would call a grader test with (its parametrize marks)."""
    marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
    per_mark = []
    for mark in marks:
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        per_mark.append([dict(zip(names, v if len(names) > 1 else (v,))) for v in values])
    for combo in itertools.product(*per_mark):
        yield {k: v for d in combo for k, v in d.items()}


def _failures(exercise: str, namespace: dict, monkeypatch) -> list[str]:
    """Run every test of the exercise's grader on `namespace`; the failure messages."""
    monkeypatch.setenv(_grading.TARGET_ENV, "reference")          # importing a grader loads the reference
    grader = importlib.import_module(f"exercises.test_{exercise}")
    monkeypatch.setattr(grader, "ex", SimpleNamespace(**namespace))
    failures = []
    for name, fn in sorted(vars(grader).items()):
        if not (name.startswith("test_") and callable(fn)):
            continue
        for kwargs in _calls(fn):
            torch.manual_seed(0)
            try:
                fn(**kwargs)
            except (Exception, pytest.fail.Exception) as e:
                failures.append(f"{name}{kwargs or ''}: {type(e).__name__}: {e}")
    return failures


@pytest.mark.parametrize("exercise", EXERCISES)
def test_harness_passes_the_reference(exercise, monkeypatch):
    assert not _failures(exercise, _reference(exercise), monkeypatch)


@pytest.mark.parametrize("exercise, mutant", CASES, ids=[f"{e}-{m.name}" for e, m in CASES])
def test_grader_names_the_mistake(exercise, mutant, monkeypatch):
    reference = _reference(exercise)
    assert set(mutant.overrides) <= set(reference), f"{mutant.name}: not a name of {exercise}'s REFERENCE"
    failures = _failures(exercise, {**reference, **mutant.overrides}, monkeypatch)
    assert failures, f"the {exercise} grader passes the wrong solution '{mutant.name}'"
    report = "\n".join(failures)
    assert mutant.expect.lower() in report.lower(), (
        f"the {exercise} grader fails '{mutant.name}' without saying {mutant.expect!r}:\n{report}")
