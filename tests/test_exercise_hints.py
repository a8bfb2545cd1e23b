"""The exercise stubs' hints come in two tiers, and both stay true.

Tier 1 is the TODO box above `# *****START OF YOUR CODE*****`: what to compute, the shapes, the
constraints the grader checks, and where the chapter teaches it, written as

    Read first: chapters/NN_*.ipynb, section        (or: sections; a further chapter: "and ...")
      - <a heading of that notebook, without its number>

Tier 2 is the walkthrough at the end of the file, after a `# HINT 2 (...)` banner: one sub-part per
function or method the student writes, titled with the name its `raise NotImplementedError("...")`
gives and underlined with dashes, starting with the code (indented by 4) and then the why.

Checked here: every box names at least one chapter section and each named heading exists; every
name a stub asks for has its walkthrough; and the walkthroughs' code, pasted into the stubs, passes
every grader (so the fallback a stuck student reads is never wrong).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = sorted((ROOT / "exercises").glob("ex[0-9]*.py"))
BANNER = "# HINT 2 (the walkthrough"
TODO = re.compile(r'^(\s*)raise NotImplementedError\("([^"]+)"\)', re.M)


def _headings(notebook: Path) -> set[str]:
    """The markdown headings of a notebook, without the '#'s and without a leading '3.' / '1a.'."""
    found = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if line.startswith("#"):
                found.add(re.sub(r"^\d+[a-z]?\.\s+", "", line.lstrip("#").strip()))
    return found


def _boxes(text: str) -> list[list[str]]:
    """The inside of every TODO box, one list of lines per box."""
    boxes, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("# ┌"):
            cur = []
        elif s.startswith("# └"):
            boxes.append(cur)
            cur = None
        elif cur is not None:
            assert s.startswith("# │") and s.endswith("│"), f"a box line outside the box style: {line!r}"
            cur.append(s[3:-1].strip())
    return boxes


def _walkthroughs(text: str) -> dict[str, list[str]]:
    """{title: the code lines (indent removed)} of the HINT 2 block."""
    hint = text.split(BANNER, 1)[1]
    lines = [line[2:] if line.startswith("# ") else "" for line in hint.splitlines()[2:]]
    parts = {}
    for i in range(len(lines) - 1):
        title, rule = lines[i].strip(), lines[i + 1]
        if title and rule and set(rule) == {"-"} and not lines[i].startswith(" "):
            code = []
            for line in lines[i + 2:]:
                if not line.startswith("    "):
                    break
                code.append(line[4:])
            parts[title] = code
    return parts


@pytest.mark.parametrize("stub", STUBS, ids=[p.stem for p in STUBS])
def test_boxes_point_to_chapter_sections_that_exist(stub):
    text = stub.read_text()
    boxes = _boxes(text)
    assert boxes and len(boxes) == len(TODO.findall(text)), f"{stub.name}: one TODO box per function to write"
    for box in boxes:
        pointers, chapter = [], None
        for line in box:
            m = re.match(r"^(?:Read first: |and )(chapters/\S+\.ipynb), sections?$", line)
            if m:
                chapter = ROOT / m.group(1)
                assert chapter.exists(), f"{stub.name} points to {m.group(1)}, which does not exist"
                continue
            m = re.match(r"^- (.+)$", line)
            if chapter is not None and m:
                pointers.append((chapter, m.group(1)))
                continue
            chapter = None
        assert pointers, f"{stub.name}: a TODO box without a 'Read first: chapters/..., section' pointer:\n{box}"
        for notebook, heading in pointers:
            assert heading in _headings(notebook), (
                f"{stub.name} points to the section {heading!r} of {notebook.name}, which has no such heading")


@pytest.mark.parametrize("stub", STUBS, ids=[p.stem for p in STUBS])
def test_every_todo_has_a_walkthrough(stub):
    text = stub.read_text()
    assert BANNER in text, f"{stub.name} has no HINT 2 block"
    code, hint = text.split(BANNER, 1)
    assert all(line.startswith("#") for line in hint.splitlines()[1:] if line.strip()), \
        f"{stub.name}: code after the HINT 2 block (it must come last)"
    names = [name for _, name in TODO.findall(code)]
    parts = _walkthroughs(text)
    for name in names:
        assert parts.get(name), f"{stub.name}: HINT 2 has no walkthrough (with code) for {name}"


def test_walkthroughs_pass_the_graders(tmp_path):
    """Paste each walkthrough's code in place of its `raise NotImplementedError` and run the graders."""
    shutil.copytree(ROOT / "exercises", tmp_path / "exercises")
    for stub in STUBS:
        text = stub.read_text()
        parts = _walkthroughs(text)
        out = []
        for line in text.split(BANNER, 1)[0].splitlines():
            m = TODO.match(line)
            out += [m.group(1) + c if c else "" for c in parts[m.group(2)]] if m else [line]
        (tmp_path / "exercises" / stub.name).write_text("\n".join(out) + "\n")
    env = dict(os.environ, MINIDIT_EXERCISE_TARGET="stub", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "exercises", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts="], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"a HINT 2 walkthrough does not pass its grader:\n{proc.stdout[-4000:]}"
