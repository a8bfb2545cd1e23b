"""exercises/use.py: chapters get the student's solution once it is filled in, minidit's before."""
import sys
import textwrap

import pytest

from exercises import use
from minidit.embed import patchify as reference_patchify


def _fake_stub(monkeypatch, source: str):
    """Register exercises.ex99_fake, written to a real file so inspect can read its source."""
    import importlib.util
    import tempfile
    from pathlib import Path
    path = Path(tempfile.mkdtemp()) / "ex99_fake.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("exercises.ex99_fake", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "exercises.ex99_fake", module)
    return module


STUB = '''
REFERENCE = {"patchify": "minidit.embed:patchify", "Block": "minidit.dit:DiTBlock"}
def patchify(x, p):
    # *****START OF YOUR CODE*****
    raise NotImplementedError("patchify")
class Block:
    def forward(self, x):
        raise NotImplementedError("forward")
'''
FILLED = '''
REFERENCE = {"patchify": "minidit.embed:patchify", "Block": "minidit.dit:DiTBlock"}
def patchify(x, p):
    return "mine"
class Block:
    def __init__(self):
        pass
    def forward(self, x):
        raise NotImplementedError("forward")     # half finished: falls back
'''


def test_unfilled_stub_gives_minidits_code(monkeypatch, capsys):
    monkeypatch.delenv(use.SWITCH, raising=False)
    _fake_stub(monkeypatch, STUB)
    assert use.mine("ex99_fake", "patchify") is reference_patchify
    assert "not filled in yet" in capsys.readouterr().out


def test_filled_in_solution_is_used_and_half_finished_class_is_not(monkeypatch, capsys):
    monkeypatch.delenv(use.SWITCH, raising=False)
    stub = _fake_stub(monkeypatch, FILLED)
    assert use.mine("ex99_fake", "patchify") is stub.patchify
    assert "your patchify" in capsys.readouterr().out
    from minidit.dit import DiTBlock
    assert use.mine("ex99_fake", "Block") is DiTBlock


def test_switch_off_always_gives_minidits(monkeypatch):
    monkeypatch.setenv(use.SWITCH, "0")
    _fake_stub(monkeypatch, FILLED)
    assert use.mine("ex99_fake", "patchify", quiet=True) is reference_patchify


def test_bad_switch_value_and_unknown_name(monkeypatch):
    _fake_stub(monkeypatch, FILLED)
    monkeypatch.setenv(use.SWITCH, "yes")
    with pytest.raises(ValueError, match="MINIDIT_USE_MINE must be 0"):
        use.mine("ex99_fake", "patchify")
    monkeypatch.delenv(use.SWITCH)
    with pytest.raises(KeyError, match="asks for"):
        use.mine("ex99_fake", "unpatchify")


def test_every_real_stub_is_unfilled_and_resolves():
    """The shipped stubs all fall back to minidit's code (so the chapters run on a fresh clone)."""
    import importlib
    import pkgutil
    import exercises
    names = [m.name for m in pkgutil.iter_modules(exercises.__path__) if m.name[:2] == "ex" and m.name[2:4].isdigit()]
    assert len(names) >= 16
    for name in names:
        stub = importlib.import_module(f"exercises.{name}")
        for attr in stub.REFERENCE:
            assert not use.is_filled_in(getattr(stub, attr)), f"{name}.{attr} is not a stub"
            assert use.mine(name, attr, quiet=True) is use.reference(name, attr)
