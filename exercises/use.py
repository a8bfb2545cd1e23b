"""Plug your exercise solutions back into the chapters (as cs231n's assignments do).

A chapter that has an exercise asks for the code it needs through `mine`:

    patchify = mine("ex01_patchify", "patchify")

and gets **your** `patchify` from `exercises/ex01_patchify.py` once you have filled it in, minidit's
(`minidit.embed.patchify`, named in the stub's `REFERENCE`) while the stub still raises
`NotImplementedError`. It prints which one it uses. So a chapter runs before you start, and after you
finish it runs on your code: its checks against the package then test your solution too.

The one switch: set the environment variable `MINIDIT_USE_MINE=0` to always use minidit's code
(e.g. to compare a chapter's output with and without your solution); the default is 1.

"Filled in" means: no `NotImplementedError` left in the source of the function (or of any method of
the class). A half-finished class therefore falls back to minidit's until it is complete; run its
grader (`python -m pytest exercises/test_ex01_patchify.py`) to see what is still wrong.
"""
from __future__ import annotations

import importlib
import inspect
import os

SWITCH = "MINIDIT_USE_MINE"


def is_filled_in(obj) -> bool:
    """True when `obj` (a function or class from a stub) no longer raises NotImplementedError anywhere."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):                 # no source to read (built-in): it is not a stub
        return True
    return "NotImplementedError" not in source


def reference(exercise: str, name: str):
    """minidit's implementation of `name`, as the stub's REFERENCE names it ("module:attribute")."""
    stub = importlib.import_module(f"exercises.{exercise}")
    module, attr = stub.REFERENCE[name].split(":")
    return getattr(importlib.import_module(module), attr)


def mine(exercise: str, name: str, *, quiet: bool = False):
    """Your `name` from exercises/<exercise>.py when it is filled in and MINIDIT_USE_MINE is not 0,
    else minidit's reference. Prints which one (unless `quiet`)."""
    stub = importlib.import_module(f"exercises.{exercise}")
    if name not in stub.REFERENCE:
        raise KeyError(f"exercises/{exercise}.py asks for {sorted(stub.REFERENCE)}, not {name!r}")
    switch = os.environ.get(SWITCH, "1")
    if switch not in ("0", "1"):
        raise ValueError(f"{SWITCH} must be 0 (always minidit's code) or 1 (yours when filled in), not {switch!r}")
    yours = getattr(stub, name)
    ref = stub.REFERENCE[name]
    if switch == "1" and is_filled_in(yours):
        chosen, why = yours, f"your {name} from exercises/{exercise}.py"
    else:
        chosen = reference(exercise, name)
        why = (f"minidit's {ref} ({SWITCH}=0)" if switch == "0" else
               f"minidit's {ref} (exercises/{exercise}.py is not filled in yet)")
    if not quiet:
        print(f"{name}: using {why}")
    return chosen
