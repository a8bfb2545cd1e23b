"""The chapters follow one pattern (issue "chapters that teach like the best courses"):

* the first code cell runs `course.setup()` (one thread, a seed, the shared figure style: PNG at
  100 dpi), so no chapter stores a JPEG-smeared plot or sets its own smaller dpi;
* nothing depends on the wall clock: no `while time... < budget` training loops (a fixed, seeded
  step count gives the same numbers on every machine of one kind);
* each ends with a "Questions" section whose answers are collapsed (`<details>`), to make the
  reader predict before running.
The notebooks themselves run in CI through nbmake; this reads them."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_first_code_cell_runs_the_shared_setup(chapter):
    first = next(_source(c) for c in _cells(chapter) if c["cell_type"] == "code")
    assert re.search(r"^from course import .*\bsetup\b", first, re.M) and re.search(r"^setup\(", first, re.M), \
        f"{chapter.name}: the first code cell must run `from course import setup` and `setup()`"
    assert "jpeg" not in first.lower() and "figure.dpi" not in first, \
        f"{chapter.name}: the figure format and dpi come from course.setup()"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_stored_figures_are_png(chapter):
    for i, cell in enumerate(_cells(chapter)):
        for out in cell.get("outputs", []):
            assert "image/jpeg" not in out.get("data", {}), f"{chapter.name}, cell {i}: a JPEG figure"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_wall_clock_budget(chapter):
    budget = re.compile(r"while[^\n]*(time\.time\(\)|perf_counter\(\)|monotonic\(\))")
    for i, cell in enumerate(_cells(chapter)):
        if cell["cell_type"] == "code":
            assert not budget.search(_source(cell)), \
                f"{chapter.name}, cell {i}: a loop bounded by the clock; use a fixed, seeded step count"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_ends_with_questions_and_collapsed_answers(chapter):
    markdown = [_source(c) for c in _cells(chapter) if c["cell_type"] == "markdown"]
    at = [i for i, text in enumerate(markdown) if re.search(r"^##\s+(\d+\.\s+)?Questions\s*$", text, re.M)]
    assert at, f"{chapter.name} has no '## Questions' section"
    rest = "\n".join(markdown[at[-1]:])
    questions = re.findall(r"^\s*\d+\.\s+\S", rest.split("<details>")[0], re.M)
    assert 3 <= len(questions) <= 6, f"{chapter.name}: {len(questions)} questions, expected 3 to 5"
    assert "<details>" in rest and "</details>" in rest, f"{chapter.name}: the answers must be collapsed"
