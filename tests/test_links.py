"""Every pointer a reader can follow resolves inside the repository, and none leads outside it.

Scanned: README.md, docs/*.md, the markdown cells of chapters/*.ipynb, and the docstrings and
comments of the Python files in minidit/, weights_loader/, exercises/, tests/, benchmarks/ and
scripts/ (code is not scanned: its strings are data, not pointers).

The rules:
1. A markdown link that is not a URL resolves, relative to the file that holds it (for a notebook:
   chapters/), to a file or folder of the repository. A link into a `.md` file with an anchor must
   name one of that file's headings (GitHub's slugs); a bare anchor, one of the file's own.
2. A repository path written in prose -- anything starting with a top-level folder of the
   repository, as in `docs/checkpoints.md`, `minidit/vae.py`, `chapters/06_pixart.ipynb`, `tests/` --
   exists, relative to the repository root. A trailing slash means a folder; `*` is a glob and `NN`
   stands for a two-digit number, and then at least one file must match. An anchor after a `.md`
   path (docs/checkpoints.md#dit) is checked as in rule 1. A path right after another project's
   possessive ("PixArt's", "diffusers'", "its", "their") names that project's file: not checked.
3. A bare document name (no folder) exists at the repository root, like README.md, or next to the
   file that names it: other documents are written with their folder, so that rule 2 checks them.
4. Sections of documents are named by anchors, never by section numbers (a section sign right after
   a document name): the numbers silently go stale.
5. Nothing names the developers' private notes, which are not part of the repository: the facts a
   reader needs are in docs/.

External links (http, https, mailto) are not checked: the tests run offline.
"""
import ast
import glob
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY_FOLDERS = ("minidit", "weights_loader", "exercises", "tests", "benchmarks", "scripts")
# Top-level folders a prose path may start with: the repository's, plus the documented ones, so that a
# pointer into a folder that was renamed or never committed is still caught.
TOP_FOLDERS = sorted({p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
                      and p.name not in ("build", "dist", "outputs")} | set(PY_FOLDERS) | {"docs", "chapters", ".ci"})
# Written in pieces so that this file does not trip its own rule 5.
PRIVATE = tuple("".join(parts) for parts in [
    ("shared", "/reference"), ("../", "shared"), ("DESIGN", ".md"), ("environment", "-recipes"),
    ("users-and", "-performance"), ("style", "-anchors"), ("comparison", "-article"),
])

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")      # link text may wrap lines
PATH = re.compile(r"(?<![\w/.:\-])((?:" + "|".join(re.escape(t) for t in TOP_FOLDERS)
                  + r")/(?:[\w.*\-]+/)*(?:[\w.*\-]*[\w*])?/?)(#[\w\-]+)?")
BARE_MD = re.compile(r"(?<![\w/.:\-])([\w\-]+\.md)\b")
SECTION_NUMBER = re.compile(r"\.md`?\)?\s*§")
POSSESSIVE = re.compile(r"(?:\b(its|their)|(\w+)(?:'s|'))\s*`?$", re.I)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
URL = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.I)


# --------------------------------------------------------------------------------------------
# What is scanned
# --------------------------------------------------------------------------------------------

def python_prose(source: str) -> str:
    """The comments and docstrings of a Python file, one block per line-group."""
    parts = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    return "\n".join(parts)


def notebook_cells(path: Path, kinds=("markdown",)) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                       for c in nb["cells"] if c["cell_type"] in kinds)


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "chapters").glob("*.ipynb"))]
    for folder in PY_FOLDERS:
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def prose(path: Path) -> str:
    """The text of `path` that readers follow pointers from."""
    if path.suffix == ".ipynb":
        return notebook_cells(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":        # HTML comments are not shown (README's results blocks: tests/test_readme_tables.py)
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return python_prose(text) if path.suffix == ".py" else text


def everything(path: Path) -> str:
    """All of a file's text (a notebook's cell sources, outputs excluded), for rule 5."""
    return notebook_cells(path, ("markdown", "code", "raw")) if path.suffix == ".ipynb" else path.read_text("utf-8")


# --------------------------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's heading anchor: links reduced to their text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    """The anchors of a markdown text's headings (fenced code skipped; repeated headings get -1, -2, ...)."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def anchors_of(path: Path) -> set[str] | None:
    """Anchors of a .md file or a notebook's markdown (also Jupyter's own form); None = not checkable."""
    if path.suffix == ".md":
        return markdown_anchors(path.read_text(encoding="utf-8"))
    if path.suffix == ".ipynb":
        text = notebook_cells(path)
        jupyter = {m.group(2).replace(" ", "-") for m in map(HEADING.match, text.splitlines()) if m}
        return markdown_anchors(text) | jupyter
    return None


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------

def inside_repository(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT)
        return True
    except ValueError:
        return False


def check_anchor(target: Path, anchor: str, shown: str) -> list[str]:
    anchors = anchors_of(target)
    if anchors is not None and anchor not in anchors:
        return [f"{shown}: no heading with anchor #{anchor} in {target.relative_to(ROOT)}"]
    return []


def problems(text: str, where: Path, own_anchors: set[str] | None = None) -> list[str]:
    """Every broken pointer in `text`, which was read from the file `where` (rules 1-5)."""
    out = []
    base = where.parent
    for m in LINK.finditer(text):                                           # rule 1
        target = m.group(1)
        if URL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if own_anchors is not None and anchor not in own_anchors:
                out.append(f"link ({target}): no heading with that anchor in this file")
            continue
        resolved = (base / file_part).resolve()
        if not inside_repository(resolved) or not resolved.exists():
            out.append(f"link ({target}): {file_part} does not exist")
        elif anchor:
            out.extend(check_anchor(resolved, anchor, f"link ({target})"))
    for m in PATH.finditer(text):                                           # rule 2
        path, anchor = m.group(1), (m.group(2) or "")[1:]
        owner = POSSESSIVE.search(text[max(0, m.start() - 40):m.start()])
        if owner and (owner.group(1) or owner.group(2)).lower() != "minidit":
            continue
        if "*" in path or "NN" in path:
            if not glob.glob(str(ROOT / path.replace("NN", "[0-9][0-9]"))):
                out.append(f"path {path}: matches no file")
            continue
        resolved = ROOT / path
        if not resolved.exists() or (path.endswith("/") and not resolved.is_dir()):
            out.append(f"path {path}: does not exist")
        elif anchor:
            out.extend(check_anchor(resolved, anchor, f"path {path}#{anchor}"))
    for m in BARE_MD.finditer(text):                                        # rule 3
        name = m.group(1)
        if not ((ROOT / name).is_file() or (base / name).is_file()):
            out.append(f"{name}: no such file at the root or next to {where.relative_to(ROOT)} "
                       "(write documents with their folder, e.g. docs/checkpoints.md)")
    for m in SECTION_NUMBER.finditer(text):                                 # rule 4
        out.append(f"section number after a document name ({text[max(0, m.start() - 30):m.end() + 4]!r}): "
                   "use a heading anchor, docs/x.md#heading")
    return out


def private_mentions(text: str) -> list[str]:                               # rule 5
    return [f"mentions the private notes ({p!r}): put the facts in docs/ and point there" for p in PRIVATE if p in text]


FILES = scanned_files()


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pointers_resolve(path):
    text = prose(path)
    own = markdown_anchors(text) if path.suffix in (".md", ".ipynb") else None
    found = problems(text, path, own)
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pointers_to_private_notes(path):
    found = private_mentions(everything(path))
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


def test_the_scan_covers_every_kind_of_file():
    kinds = {p.relative_to(ROOT).parts[0] if len(p.relative_to(ROOT).parts) > 1 else p.name for p in FILES}
    assert {"README.md", "docs", "chapters", "minidit", "weights_loader", "exercises", "tests"} <= kinds
    assert (ROOT / "docs" / "checkpoints.md") in FILES


# --------------------------------------------------------------------------------------------
# The rules catch what they are meant to catch (so a green run means something)
# --------------------------------------------------------------------------------------------

def test_rules_flag_broken_pointers():
    readme, chapter, module = ROOT / "README.md", ROOT / "chapters" / "x.ipynb", ROOT / "minidit" / "x.py"
    bad = {
        "[gone](docs/no_such_file.md)": readme,
        "[anchor](docs/checkpoints.md#no-such-heading)": readme,
        "[escape](../../etc/passwd)": readme,
        "see `minidit/no_such_module.py`": module,
        "see docs/checkpoints.md#no-such-heading": module,
        "all of `chapters/NN_nothing_*.ipynb`": readme,
        "[rel](docs/checkpoints.md)": chapter,                # relative to chapters/: does not exist
        "see checkpoints.md for the keys": module,            # a bare document name
        "see docs/checkpoints.md §13": module,                # a section number
        "[self](#no-such-heading)": readme,
    }
    for text, where in bad.items():
        own = set() if where.suffix in (".md", ".ipynb") else None
        assert problems(text, where, own), f"not flagged: {text!r} in {where.name}"
    leak = "see " + PRIVATE[0] + "/checkpoints.md"
    assert private_mentions(leak)


def test_rules_accept_good_pointers():
    readme, chapter, doc, module = (ROOT / "README.md", ROOT / "chapters" / "x.ipynb", ROOT / "docs" / "x.md",
                                    ROOT / "weights_loader" / "x.py")
    good = {
        "[ok](docs/checkpoints.md#the-timestep-frequency-trap) and [web](https://example.org/a.md)": readme,
        "[ok](../docs/article-claims.md#text-encoders), `minidit/pixart.py`, `tests/`": chapter,
        "[ok](checkpoints.md#dit), README.md": doc,
        "docs/checkpoints.md#fused-attention-weights; PixArt's scripts/inference.py; `chapters/NN_*.ipynb`": module,
    }
    for text, where in good.items():
        assert problems(text, where, set()) == [], text


def test_slugs_follow_github():
    assert slug("T5 v1.1 and mT5") == "t5-v11-and-mt5"
    assert slug("DiT original checkpoint (.pt)") == "dit-original-checkpoint-pt"
    assert slug("The `pos_embed` [table](x.md)") == "the-pos_embed-table"
    assert markdown_anchors("# A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}
