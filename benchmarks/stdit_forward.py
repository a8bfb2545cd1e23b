"""STDiT-XL/2 (Open-Sora 1.0) forward at 16 x 256²: factorized vs full spacetime attention, CPU fp32.

    python benchmarks/stdit_forward.py                      # full width (1152, 16 heads), 4 of the 28 blocks
    python benchmarks/stdit_forward.py --depth 28           # the whole model (~3 GB of fp32 weights)
    python benchmarks/stdit_forward.py --tiny               # a 2-block width-144 model, for a smoke test
    python benchmarks/stdit_forward.py --out benchmarks/results/stdit_forward.txt

The latent of a 16-frame 256² clip is 16 x 32 x 32 (4 channels): 16 frames of 16 x 16 = 256 tokens,
4096 tokens in all. `factorized` is the released model: spatial attention over (B*16, 256) then
temporal attention over (B*256, 16); `full` is one attention over all 4096 tokens of the clip
(`STDiT.forward(attention="full")`: the same weights, `attn_temp` unused). Each runs with both
attention paths of `minidit.attention`: `sdpa` (fused, O(N) memory) and `manual` (the explicit
softmax, which materialises the score matrix). Batch 1 (one conditional forward), 120 T5 tokens (40
real), timestep 500, random weights N(0, 0.02), the same in every process. Each (path, mode) runs in a
fresh process, `--rounds` times, all four cases in each round with the order alternating, and the
fastest round is kept: median wall time and the peak resident-memory increase over the weights and
inputs (`benchmarks/common.py`). The second table is the cost model (`minidit.spacetime.attention_cost`),
computed, not measured.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (COMPARISON_COLUMNS, child_case, comparison_rows, machine, markdown_table,  # noqa: E402
                               measure, report, run_rounds, touch)

MODES = ("factorized", "full")
BACKENDS = ("sdpa", "manual")
XL = dict(hidden_size=1152, num_heads=16, caption_channels=4096, depth=4)
TINY = dict(hidden_size=144, num_heads=2, caption_channels=64, depth=2)
LATENT = (16, 32, 32)            # 16 frames of 256² through the SD VAE (/8)
TINY_LATENT = (4, 8, 8)


def build(case):
    import torch
    from minidit.stdit import STDIT_XL_2_16x256, STDiT, STDiTConfig
    torch.manual_seed(0)
    config = STDiTConfig(**{**STDIT_XL_2_16x256.__dict__, **case["shape"], "input_size": tuple(case["latent"])})
    model = STDiT(config).eval()
    with torch.no_grad():                      # non-zero everywhere (attn_temp.proj and the output start at 0)
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model


def child(case):
    import torch
    from minidit.attention import attention_backend
    model = build(case)
    c = model.config
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, *c.input_size, generator=g)
    y = torch.randn(1, c.model_max_length, c.caption_channels, generator=g)
    mask = torch.zeros(1, c.model_max_length, dtype=torch.long)
    mask[0, :40] = 1
    t = torch.tensor([500.0])
    touch(model)
    with attention_backend(case["backend"]):
        out, result = measure(lambda: model(x, t, y, mask, attention=case["mode"]), case["repeats"])
    torch.save(out, case["out"])
    report(result)


def cost_rows(F: int, S: int, D: int, heads: int, frames_label: str):
    from minidit.spacetime import attention_cost
    rows = []
    for mode in MODES:
        c = attention_cost(F, S, D, heads, mode, bytes_per_element=4)
        rows.append({"clip": frames_label, "mode": mode, "tokens": F * S,
                     "attention GFLOP / block": f"{c.flops / 1e9:.4g}",
                     "of which scores": f"{c.score_flops / 1e9:.4g}",
                     "largest fp32 score matrix (MiB)": f"{c.score_bytes / 2**20:.4g}"})
    return rows


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="2-block width-144 model on 4 x 8 x 8 latents")
    parser.add_argument("--depth", type=int, help="number of blocks (default 4 of the 28; 2 with --tiny)")
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per case, alternating order")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--out", help="also write the tables to this file")
    args = parser.parse_args(argv)

    import tempfile

    import torch
    shape = dict(TINY if args.tiny else XL)
    if args.depth:
        shape["depth"] = args.depth
    latent = TINY_LATENT if args.tiny else LATENT
    work = tempfile.mkdtemp(prefix="stdit_bench_")
    outs = {(b, m): os.path.join(work, f"{b}_{m}.pt") for b in args.backends for m in MODES}
    # all cases in one set of rounds (alternating order), so the load drift of a shared machine is spread
    cases = {f"{b} {m}": dict(shape=shape, latent=latent, mode=m, backend=b, repeats=args.repeats, out=outs[b, m])
             for b, m in outs}
    res = run_rounds(__file__, cases, args.rounds)
    rows = []
    for backend in args.backends:
        mine = {m: res[f"{backend} {m}"] for m in MODES}
        rows += [{"attention": r.pop("impl"), **r} for r in comparison_rows(mine, "factorized", path=backend)]
    for row in rows:                           # both paths compute the same numbers
        if len(args.backends) > 1:
            a, b = (torch.load(outs[k, row["attention"]], weights_only=True) for k in args.backends[:2])
            row["max abs diff sdpa vs manual"] = f"{(a - b).abs().max().item():.1e}"
    F, H, W = latent[0], latent[1] // 2, latent[2] // 2
    name = "STDiT (tiny)" if args.tiny else "STDiT-XL/2 (full width)"
    lines = [f"{name}, {shape['depth']} of 28 blocks, latent {'x'.join(map(str, latent))} = {F} frames x {H * W} "
             f"tokens ({F * H * W} tokens), batch 1, 120 caption tokens, fp32, {machine()}", "",
             markdown_table(rows, ["path", "attention", *COMPARISON_COLUMNS, "max abs diff sdpa vs manual"]), "",
             f"Cost model (computed: minidit.spacetime.attention_cost), one block's self-attention, batch 1, "
             f"D = {shape['hidden_size']}, {shape['num_heads']} heads", "",
             markdown_table(cost_rows(F, H * W, shape["hidden_size"], shape["num_heads"], f"{F} x {H * W}")
                            + ([] if args.tiny else cost_rows(16, 1024, 1152, 16, "16 x 1024 (512²)")),
                            ["clip", "mode", "tokens", "attention GFLOP / block", "of which scores",
                             "largest fp32 score matrix (MiB)"])]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
