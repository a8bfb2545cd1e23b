"""Attention memory: minidit's manual path (materialises the score matrix) vs the SDPA path.

    python benchmarks/attention_memory.py            # PixArt/DiT-XL width, 16 heads, fp32, CPU

For each token count (the images a p=2 DiT on an f8 VAE sees: 512² = 1024 tokens, ... 2048² =
16384) one fresh process runs `minidit.attention.attention` on batch 1 and reports the peak
resident-memory increase and the time. The manual path needs two nh x T x T float32 matrices
(scores and softmax): 16 x 4096² x 4 B = 1 GiB each at 1024²; SDPA's fused kernel needs O(T).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (ChildFailed, child_case, machine, markdown_table, median, peak_memory,  # noqa: E402
                               report, run_child, time_calls)


def child(case):
    import torch

    from minidit.attention import attention
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 16, case["tokens"], 72, generator=g) for _ in range(3))
    with torch.no_grad(), peak_memory() as memory:
        times = time_calls(lambda: attention(q, k, v, backend=case["backend"]), repeats=case["repeats"], warmup=1)
    report({"median_s": round(median(times), 3), "peak_mib": memory["peak_mib"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=str, default="1024,4096,16384")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.tokens.split(",")):
        side = int(n**0.5) * 16
        score_mib = 16 * n * n * 4 / 2**20
        for backend in ("manual", "sdpa"):
            try:
                r = run_child(__file__, dict(tokens=n, backend=backend, repeats=args.repeats))
            except ChildFailed as e:
                if e.returncode != -9:
                    raise
                r = {"median_s": "-", "peak_mib": "killed: out of memory"}   # a result on this machine
            rows.append({"tokens (image)": f"{n} ({side}²)", "path": backend, "median (s)": r["median_s"],
                         "peak extra memory (MiB)": r["peak_mib"],
                         "one fp32 score matrix (MiB)": f"{score_mib:.0f}"})
    print(f"\nattention, batch 1, 16 heads x 72, fp32, {machine()}\n")
    print(markdown_table(rows, ["tokens (image)", "path", "median (s)", "peak extra memory (MiB)",
                                "one fp32 score matrix (MiB)"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
