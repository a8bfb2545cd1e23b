"""The README's benchmark tables are the files the benchmarks wrote (benchmarks/readme_tables.py)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_tables  # noqa: E402


def test_readme_tables_are_the_results_files():
    proc = subprocess.run([sys.executable, "benchmarks/readme_tables.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_table_in_the_benchmarks_section_comes_from_a_results_file():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Benchmarks"):text.index("## Tests")]
    inside, hand_written = False, []
    for line in section.splitlines():
        if readme_tables.OPEN.match(line.strip()):
            inside = True
        elif line.strip() == readme_tables.CLOSE:
            inside = False
        elif line.startswith("|") and not inside:
            hand_written.append(line)
    assert not hand_written, f"tables typed into the README instead of copied from benchmarks/results/: {hand_written}"


def test_every_source_exists_unless_it_needs_a_gpu():
    """A missing file renders as "not measured yet": allowed only for the GPU benchmarks (no card here),
    so that a mistyped source cannot hide a table."""
    text = (ROOT / "README.md").read_text()
    sources = [s.partition("#")[0] for line in text.splitlines() if (m := readme_tables.OPEN.match(line.strip()))
               for s in m["sources"].split()]
    assert sources
    missing = [s for s in sources if not (ROOT / s).is_file() and "gpu" not in Path(s).name]
    assert not missing, missing


def _write(root: Path, name: str, text: str) -> None:
    (root / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (root / "benchmarks" / "results" / name).write_text(text)


def test_a_block_takes_the_numbered_table_and_merges_sources(tmp_path):
    _write(tmp_path, "a.txt", "header line\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\nnote\n| k |\n|---|\n| first |\n")
    _write(tmp_path, "b.txt", "| x | y |\n|---|---|\n| 3 | 4 |\n")
    readme = ("intro\n<!-- results benchmarks/results/a.txt#2 -->\nold\n<!-- /results -->\nmiddle\n"
              "<!-- results benchmarks/results/a.txt benchmarks/results/b.txt -->\n| stale |\n<!-- /results -->\nend\n")
    out = readme_tables.render(readme, tmp_path)
    assert out == ("intro\n<!-- results benchmarks/results/a.txt#2 -->\n| k |\n|---|\n| first |\n<!-- /results -->\n"
                   "middle\n<!-- results benchmarks/results/a.txt benchmarks/results/b.txt -->\n| x | y |\n|---|---|\n"
                   "| 1 | 2 |\n| 3 | 4 |\n<!-- /results -->\nend\n")
    assert readme_tables.render(out, tmp_path) == out                           # a second run changes nothing


def test_a_missing_file_says_not_measured_and_invents_nothing(tmp_path):
    out = readme_tables.render("<!-- results benchmarks/results/gpu.txt -->\n| 9 |\n<!-- /results -->\n", tmp_path)
    assert "Not measured yet" in out and "gpu.txt" in out and "| 9 |" not in out


@pytest.mark.parametrize("readme, message", [
    ("<!-- results benchmarks/results/a.txt#3 -->\n<!-- /results -->\n", "has 1 markdown table"),
    ("<!-- results benchmarks/results/a.txt -->\nno end\n", "is not closed"),
    ("<!-- results benchmarks/results/a.txt -->\n<!-- results benchmarks/results/a.txt -->\n<!-- /results -->\n",
     "is not closed"),
    ("text\n<!-- /results -->\n", "without an opening"),
    ("<!-- results benchmarks/results/a.txt benchmarks/results/c.txt -->\n<!-- /results -->\n", "header differs"),
])
def test_malformed_blocks_are_refused(tmp_path, readme, message):
    _write(tmp_path, "a.txt", "| x | y |\n|---|---|\n| 1 | 2 |\n")
    _write(tmp_path, "c.txt", "| x | z |\n|---|---|\n| 1 | 2 |\n")
    with pytest.raises(ValueError, match=message):
        readme_tables.render(readme, tmp_path)


def test_run_all_runs_every_benchmark_and_then_the_readme_tables():
    script = (ROOT / "benchmarks" / "run_all.sh").read_text()
    helpers = {"common.py", "flops.py", "readme_tables.py"}                    # imported by the benchmarks
    benchmarks = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name not in helpers)
    missing = [name for name in benchmarks if not re.search(rf"\b{name[:-3]}\b", script)]
    assert not missing, f"benchmarks that run_all.sh does not run: {missing}"
    assert script.rstrip().endswith("python benchmarks/readme_tables.py")
