"""The layers the folders show, held by a test (read from the source with `ast`, nothing imported).

    model and maths files   minidit/*.py (but cli.py, __main__.py), minidit/text/   import nothing above them
    weights_loader/         reading files + key maps: imports only the model and maths files
    minidit/pipelines/      import both (at the top of the file: no in-function import hides an edge)
    minidit/cli.py          imports the pipelines
Nothing in minidit/ or weights_loader/ imports a test-only oracle.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORACLES = ("diffusers", "transformers", "timm", "open_clip", "peft", "hypothesis", "sentence_transformers",
           "rotary_embedding_torch")
PROJECT = ("minidit", "weights_loader")


def layer(module: str) -> str:
    if module.startswith("weights_loader"):
        return "loader"
    if module.startswith("minidit.pipelines"):
        return "pipeline"
    if module in ("minidit.cli", "minidit.__main__"):
        return "cli"
    return "core"


ALLOWED = {"core": {"core"}, "loader": {"core", "loader"}, "pipeline": {"core", "loader", "pipeline"},
           "cli": {"core", "loader", "pipeline", "cli"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, line, inside a function?) for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in in_function
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module]
            for name in names:
                yield name, node.lineno, id(node) in in_function


FILES = sorted(p for top in PROJECT for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layers(path):
    here = module_name(path)
    problems = []
    for name, line, inside in imports(path):
        top = name.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line} imports {name}"
        if top in ORACLES:
            problems.append(f"{where}: a test-only oracle (requirements-dev.txt), never a runtime dependency")
        if top in PROJECT:
            if layer(name) not in ALLOWED[layer(here)]:
                problems.append(f"{where}: a {layer(here)} file may not import the {layer(name)} layer")
            if inside:
                problems.append(f"{where} inside a function: import project modules at the top of the file")
    assert not problems, "\n".join(problems)


def test_the_rule_catches_what_it_should(tmp_path, monkeypatch):
    """The checker itself: an upward import, a hidden in-function import and an oracle are all found."""
    fake = ROOT / "minidit" / "_layering_probe.py"
    fake.write_text("import diffusers\nfrom .pipelines import dit\n\ndef f():\n    from minidit import vae\n")
    try:
        with pytest.raises(AssertionError) as e:
            test_layers(fake)
    finally:
        fake.unlink()
    text = str(e.value)
    assert "oracle" in text and "may not import the pipeline layer" in text and "inside a function" in text


def test_every_project_file_is_checked():
    names = {module_name(p) for p in FILES}
    for expected in ("minidit.samplers", "minidit.grid", "minidit.flow", "minidit.pipelines.toy",
                     "minidit.pipelines.common", "weights_loader.io", "minidit.cli"):
        assert expected in names
    assert "minidit.toy" not in names        # the toy is a pipeline: it lives in minidit/pipelines/
