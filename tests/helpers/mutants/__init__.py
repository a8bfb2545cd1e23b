"""Plausible wrong solutions of the exercises, one module per exercise (named like its stub).

Each module lists `MUTANTS`: a typical student mistake, the functions/classes it replaces in the
reference (the rest of the exercise is graded on minidit's code), and a fragment the grader's
failure message must contain, so that a student who makes that mistake is told which one it is.
`tests/test_exercise_mutants.py` runs every grader against every mutant.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Mutant:
    name: str                      # the mistake, in a few words
    overrides: dict = field(repr=False)   # {name in the stub's REFERENCE: wrong implementation}
    expect: str                    # a fragment of the grader's message (case-insensitive)
