"""Copy the measured tables from `benchmarks/results/` into README.md, so that the README shows exactly what
the benchmarks printed.

    python benchmarks/readme_tables.py           # rewrite README.md's results blocks from the files
    python benchmarks/readme_tables.py --check   # exit 1 (and show what differs) if the README is stale

A results block in the README is a pair of HTML comments (invisible on GitHub) around a table:

    <!-- results benchmarks/results/sd3_transformer.txt#3 -->
    | image | impl | ... |
    |---|---|...|
    | 512² | diffusers | ... |
    <!-- /results -->

The opening comment names one or more sources, `FILE` or `FILE#N` (the N-th markdown table of that file,
counted from 1; no `#N`: the file's first table). Several sources give one table: the first source's header,
then every source's rows in order; their headers must be the same. A source file that does not exist yet
(a GPU benchmark that no lent card has run) gives a line saying which command would measure it, never an
invented row. `bash benchmarks/run_all.sh` calls this script last; `tests/test_readme_tables.py` checks that
the README and the files agree.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = re.compile(r"^<!-- results (?P<sources>.+?) -->$")
CLOSE = "<!-- /results -->"


def markdown_tables(text: str) -> list[list[str]]:
    """The markdown tables of a text, each a list of its `|`-lines (header, separator, rows)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return [t for t in tables if len(t) >= 2 and set(t[1].replace("|", "").strip()) <= set("-: ")]


def source_table(source: str, root: Path) -> list[str] | None:
    """The lines of one source (`FILE` or `FILE#N`), or None when the file does not exist yet."""
    name, _, index = source.partition("#")
    path = root / name
    if not path.is_file():
        return None
    tables = markdown_tables(path.read_text())
    n = int(index) if index else 1
    if not 1 <= n <= len(tables):
        raise ValueError(f"{source}: {name} has {len(tables)} markdown table(s), not a table #{n}")
    return tables[n - 1]


def block_lines(sources: list[str], root: Path) -> list[str]:
    """The table a results block shows: the sources' rows under one header."""
    tables = [(s, source_table(s, root)) for s in sources]
    missing = [s for s, t in tables if t is None]
    if missing:
        files = ", ".join(Path(s.partition("#")[0]).name for s in missing)
        return [f"*Not measured yet: no run has written {files} in the results folder (`bash benchmarks/run_all.sh` "
                "does, on a machine with what the benchmark needs).*"]
    header = tables[0][1][:2]
    lines = list(header)
    for source, table in tables:
        if table[:2] != header:
            raise ValueError(f"{source}: its table's header differs from {sources[0]}'s; "
                             "a results block merges tables with one header only")
        lines += table[2:]
    return lines


def render(readme: str, root: Path = ROOT) -> str:
    """README text with every results block's table replaced by the one its sources give."""
    out, lines, i = [], readme.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        match = OPEN.match(line.strip())
        if not match:
            if line.strip() == CLOSE:
                raise ValueError(f"README line {i}: {CLOSE} without an opening `<!-- results ... -->`")
            continue
        end = next((j for j in range(i, len(lines)) if lines[j].strip() == CLOSE), None)
        nested = next((j for j in range(i, end or len(lines)) if OPEN.match(lines[j].strip())), None)
        if end is None or nested is not None:
            raise ValueError(f"README line {i}: `{line.strip()}` is not closed by {CLOSE} before the next block")
        out += block_lines(match["sources"].split(), root)
        out.append(lines[end])
        i = end + 1
    return "\n".join(out) + ("\n" if readme.endswith("\n") else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    old = args.readme.read_text()
    new = render(old, ROOT)
    if args.check:
        if new != old:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       "README.md", "README.md from benchmarks/results"))
            print("README.md's results tables differ from benchmarks/results/: run python benchmarks/readme_tables.py")
            return 1
        print("README.md's results tables match benchmarks/results/")
        return 0
    if new != old:
        args.readme.write_text(new)
    blocks = sum(1 for line in new.splitlines() if OPEN.match(line.strip()))
    print(f"{args.readme.name}: {blocks} results blocks {'updated' if new != old else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
