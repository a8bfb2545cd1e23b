"""benchmarks/windowed_denoise.py, a tiny run in this process: each case reports its window count and tokens,
a window as large as the latent gives the direct output, and the table shows the ratios (no wall-clock
assertion: the measured table lives in benchmarks/results/windowed_denoise.txt)."""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import windowed_denoise as bench  # noqa: E402

torch.set_num_threads(1)


def run_case(capsys, tmp_path, **kw):
    case = dict(latent=16, window=8, depth=1, repeats=1, backend="sdpa", shape=bench.TINY, per_call=1,
                impl="windowed", overlap=0, out=str(tmp_path / f"{len(list(tmp_path.iterdir()))}.pt"))
    case.update(kw)
    bench.child(case)
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]), torch.load(case["out"], weights_only=True)


def test_tiny_windowed_benchmark(capsys, tmp_path):
    direct, out_direct = run_case(capsys, tmp_path, impl="direct", window=16)
    whole, out_whole = run_case(capsys, tmp_path, window=16)             # one window = the whole latent
    assert torch.equal(out_whole, out_direct)
    four, _ = run_case(capsys, tmp_path)                                   # 2 x 2 windows of 8, no overlap
    nine, _ = run_case(capsys, tmp_path, overlap=4, per_call=3)            # 3 x 3 windows, 3 per call
    assert (direct["windows"], four["windows"], nine["windows"]) == (1, 4, 9)
    assert (direct["tokens"], four["tokens"], nine["tokens"]) == (64, 64, 144)   # (16/2)^2, 4 (8/2)^2, 9 (8/2)^2
    for r in (direct, four, nine):
        assert r["median_s"] > 0 and r["peak_mib"] is not None
    args = argparse.Namespace(tiny=True, depth=1, latent=16, window=8, per_call=1, backend="sdpa")
    text = bench.table({"direct": direct, "windows, overlap 0": four}, args)
    assert "| windows, overlap 0 | 4 | 64 |" in text and "| direct | 1 | 64 |" in text


def hand_macs(N, d=bench.TINY["hidden_size"], L=1, M=300, C=bench.TINY["caption_channels"], p=2, c_in=4, c_out=8):
    """PixArt's multiply-accumulates per sample, term by term: patch embedding, timestep MLP (256 -> d -> d),
    t_block (d -> 6d), caption MLP (C -> d -> d), L blocks (14 d^2 N linear, 2 N^2 d self-attention, 2 d^2 M
    cross-attention keys/values, 2 N M d cross-attention), the final linear."""
    return (N * p * p * c_in * d + 256 * d + d * d + 6 * d * d + M * (C * d + d * d)
            + L * (14 * d * d * N + 2 * N * N * d + 2 * d * d * M + 2 * N * M * d) + N * d * p * p * c_out)


def test_counted_macs_match_the_hand_count():
    case = dict(latent=16, window=8, depth=1, shape=bench.TINY, per_call=1, impl="direct", overlap=0)
    assert bench.counted_macs(case) == (2 * hand_macs(64), 1)                       # batch 2, (16/2)^2 tokens
    assert bench.counted_macs({**case, "impl": "windowed"}) == (4 * 2 * hand_macs(16), 4)
    assert bench.counted_macs({**case, "impl": "windowed", "overlap": 4, "per_call": 9}) == (9 * 2 * hand_macs(16), 9)
