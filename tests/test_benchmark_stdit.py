"""benchmarks/stdit_forward.py on a tiny STDiT: the script's own code (main, its child, the cost table) run
in this process (the fresh-process runner replaced by a direct call), the table's rows and columns, and the
cost-model figures against hand-derived ones. No wall-clock assertion: figures live in benchmarks/results/."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import stdit_forward as bench  # noqa: E402

torch.set_num_threads(1)


def parse(text: str) -> list[dict]:
    """Every row of every markdown table in `text`, as {column: cell}."""
    lines = [s for s in text.splitlines() if s.startswith("|")]
    split = lambda s: [c.strip() for c in s.strip().strip("|").split("|")]  # noqa: E731
    rows, columns = [], None
    for i, line in enumerate(lines):
        if set(line) <= set("|-"):
            continue
        if i + 1 < len(lines) and set(lines[i + 1]) <= set("|-"):
            columns = split(line)
        else:
            rows.append(dict(zip(columns, split(line))))
    return rows


def test_tiny_run_writes_both_tables(tmp_path, monkeypatch):
    calls = []

    def in_process(script, cases, rounds):
        results = {}
        for impl, case in cases.items():
            printed = []
            monkeypatch.setattr(bench, "report", printed.append)
            bench.child(case)
            calls.append((case["backend"], case["mode"]))
            results[impl] = {**printed[0], "peak_mib_default_malloc": printed[0]["peak_mib"]}
        return results

    monkeypatch.setattr(bench, "run_rounds", in_process)
    out = tmp_path / "stdit.txt"
    text = bench.main(["--tiny", "--repeats", "1", "--out", str(out)])
    assert out.read_text() == text
    assert "STDiT (tiny), 2 of 28 blocks, latent 4x8x8 = 4 frames x 16 tokens (64 tokens)" in text
    assert calls == [("sdpa", "factorized"), ("sdpa", "full"), ("manual", "factorized"), ("manual", "full")]
    rows = parse(text)
    timing = [r for r in rows if "path" in r]
    assert [(r["path"], r["attention"]) for r in timing] == calls
    for r in timing:
        assert float(r["median forward (s)"]) > 0 and float(r["peak extra memory (MiB)"]) >= 0
        assert float(r["max abs diff sdpa vs manual"]) < 1e-4        # the two attention paths agree
    assert [r["time ratio"] == "" for r in timing] == [True, False, True, False]
    cost = [r for r in rows if "clip" in r]
    assert [(r["clip"], r["mode"], r["tokens"]) for r in cost] == [("4 x 16", "factorized", "64"),
                                                                    ("4 x 16", "full", "64")]
    # by hand, D = 144, 2 heads, F = 4, S = 16: full scores 4 * 64^2 * 144 = 2.36 MFLOP, 2 * 64^2 fp32 = 32 KiB
    assert float(cost[1]["of which scores"]) == pytest.approx(4 * 64**2 * 144 / 1e9, rel=1e-3)
    assert float(cost[1]["largest fp32 score matrix (MiB)"]) == pytest.approx(2 * 64**2 * 4 / 2**20, rel=1e-3)
    assert float(cost[0]["of which scores"]) == pytest.approx(4 * (4 * 16**2 + 16 * 4**2) * 144 / 1e9, rel=1e-3)
    json.dumps(rows)                                                  # plain strings all the way


def test_the_modes_differ_and_the_weights_are_the_same_in_every_process():
    case = dict(shape=bench.TINY, latent=bench.TINY_LATENT)
    a, b = bench.build(case), bench.build(case)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(block.attn_temp.proj.weight.abs().max() > 0 for block in a.blocks)   # not the zero init
