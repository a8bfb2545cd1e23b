"""SD3-medium MM-DiT forward: minidit vs diffusers' SD3Transformer2DModel on identical weights.

    python benchmarks/sd3_transformer.py                 # 512² and 1024² (latents 64², 128²), CPU fp32
    python benchmarks/sd3_transformer.py --tiny          # a 3-block width-128 model, a quick smoke test
    python benchmarks/sd3_transformer.py --depth 4       # full width (1536, 24 heads), fewer blocks

One forward as a CFG sampling step runs it: batch 2 (conditional + unconditional), 333 text tokens
(77 CLIP + 256 T5, diffusers' default; the official reference uses 154 for short prompts), the
pooled 2048-d text vector, timestep 500 (sigma 0.5). Random weights are written once in the
diffusers layout (`save_pretrained`); minidit reads the same file through `weights_loader.load_mmdit`,
and the script checks that the outputs agree. Each (implementation, size) runs in a fresh process
(`--rounds` of them, alternating which implementation goes first; the fastest is kept): median wall
time of the forward and the peak resident-memory increase over the warm-up and timed forwards
(weights and inputs excluded), see `benchmarks/common.py`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (COMPARISON_COLUMNS, child_case, comparison_rows, machine, markdown_table, max_abs_diff,  # noqa: E402
                               measure, report, run_rounds, touch)

SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
TINY = dict(SD3_MEDIUM, num_layers=3, num_attention_heads=2, caption_projection_dim=128)
TEXT_TOKENS = 333


def child(case):
    import torch
    g = torch.Generator().manual_seed(0)
    B, side = 2, case["latent"]
    x = torch.randn(B, 16, side, side, generator=g)
    context = torch.randn(B, TEXT_TOKENS, 4096, generator=g)
    pooled = torch.randn(B, 2048, generator=g)
    t = torch.tensor([500.0, 500.0])
    if case["impl"] == "diffusers":
        from diffusers import SD3Transformer2DModel
        model = SD3Transformer2DModel.from_pretrained(case["folder"]).eval()
        run = lambda: model(hidden_states=x, encoder_hidden_states=context, pooled_projections=pooled,  # noqa: E731
                            timestep=t).sample
    else:
        from weights_loader import load_mmdit
        model = load_mmdit(case["folder"])
        run = lambda: model(x, t, y=pooled, context=context)                        # noqa: E731
    touch(model)                     # page in memory-mapped weights: they are not activation memory
    with torch.no_grad():
        out, result = measure(run, case["repeats"])
    torch.save(out, case["out"])
    report(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="3-block width-128 model (smoke test)")
    parser.add_argument("--depth", type=int, help="override the number of blocks (24), keeping the width")
    parser.add_argument("--latents", type=str, default="64,128", help="latent sides (64 = 512², 128 = 1024²)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating order")
    args = parser.parse_args()

    import torch
    from diffusers import SD3Transformer2DModel
    shape = dict(TINY if args.tiny else SD3_MEDIUM)
    if args.depth:
        shape["num_layers"] = args.depth
    folder = os.path.join(tempfile.mkdtemp(prefix="sd3_bench_"), "transformer")
    torch.manual_seed(0)
    model = SD3Transformer2DModel(**shape)
    with torch.no_grad():                      # non-zero everywhere (the output layer starts at 0 otherwise)
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(folder)             # one folder: the stored position table covers every size
    del model

    rows = []
    for side in (int(s) for s in args.latents.split(",")):
        outs = {impl: os.path.join(os.path.dirname(folder), f"{impl}{side}.pt") for impl in ("diffusers", "minidit")}
        res = run_rounds(__file__, {impl: dict(impl=impl, folder=folder, latent=side, repeats=args.repeats, out=out)
                                    for impl, out in outs.items()}, args.rounds)
        err = max_abs_diff(outs["minidit"], outs["diffusers"])
        rows += comparison_rows(res, "diffusers", image=f"{side * 8}²")
        rows[-1]["max abs diff"] = f"{err:.1e}"
    width = shape["num_attention_heads"] * shape["attention_head_dim"]
    name = f"SD3-medium MM-DiT{' (tiny)' if args.tiny else ''}, {shape['num_layers']} blocks, width {width}"
    print(f"\n{name}, batch 2 (CFG), {TEXT_TOKENS} text tokens, fp32, {machine()}\n")
    print(markdown_table(rows, ["image", "impl", *COMPARISON_COLUMNS, "max abs diff"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
