"""DiT-XL/2 forward pass: minidit vs diffusers' DiTTransformer2DModel on identical weights.

    python benchmarks/dit_forward.py                 # 256² and 512², batch 2, fp32, CPU
    python benchmarks/dit_forward.py --tiny          # a 2-layer model, for a quick smoke test
    python benchmarks/dit_forward.py --depth 4       # full width, fewer blocks

Random weights are written once in the diffusers layout (`save_pretrained`); minidit reads the same
file through `weights_loader.load_dit` (with diffusers' timestep convention, so the outputs must
agree — the script checks it). Each (implementation, resolution) runs in a fresh process (`--rounds`
of them, alternating which implementation goes first; the fastest is kept): median wall time of the
forward pass and the peak resident-memory increase during it (weights and inputs excluded), see
`benchmarks/common.py`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (COMPARISON_COLUMNS, child_case, comparison_rows, machine, markdown_table, max_abs_diff,  # noqa: E402
                               measure, report, run_rounds, same_weights_folder, touch)

XL2 = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28)
TINY = dict(num_attention_heads=2, attention_head_dim=32, num_layers=2)


def child(case):
    import dataclasses

    import torch
    torch.manual_seed(0)
    side = case["latent"]
    x = torch.randn(case["batch"], 4, side, side)
    t = torch.tensor([999, 500][: case["batch"]] * (case["batch"] // 2 or 1))[: case["batch"]]
    y = torch.tensor([207, 1000] * case["batch"])[: case["batch"]]
    if case["impl"] == "diffusers":
        from diffusers import DiTTransformer2DModel
        model = DiTTransformer2DModel.from_pretrained(case["folder"]).eval()
        run = lambda: model(x, t, y).sample                                          # noqa: E731
    else:
        from weights_loader import load_dit
        from weights_loader.dit import dit_config_from_diffusers
        from weights_loader.configs import read_config
        config = dataclasses.replace(dit_config_from_diffusers(read_config(case["folder"])), timestep_freq_shift=1)
        model = load_dit(case["folder"], config)
        run = lambda: model(x, t, y)                                                 # noqa: E731
    touch(model)                     # page in memory-mapped weights: they are not activation memory
    out, result = measure(run, case["repeats"])
    torch.save(out, case["out"])
    report(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="2-layer width-64 model (smoke test)")
    parser.add_argument("--depth", type=int, help="override the number of blocks (28)")
    parser.add_argument("--latents", type=str, default="32,64", help="latent sides (32 = 256², 64 = 512²)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating order")
    args = parser.parse_args()

    import torch
    from diffusers import DiTTransformer2DModel
    work = tempfile.mkdtemp(prefix="dit_bench_")
    torch.manual_seed(0)
    shape = dict(TINY if args.tiny else XL2)
    if args.depth:
        shape["num_layers"] = args.depth
    folders = {}
    for side in (int(s) for s in args.latents.split(",")):
        folder = os.path.join(work, f"latent{side}")
        if not folders:
            model = DiTTransformer2DModel(in_channels=4, out_channels=8, sample_size=side, patch_size=2,
                                          num_embeds_ada_norm=1000, **shape)
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0, 0.02)
                shared = model.transformer_blocks[0].norm1.emb.state_dict()
                for block in model.transformer_blocks[1:]:   # diffusers stores one copy per block
                    block.norm1.emb.load_state_dict(shared)
            model.save_pretrained(folder)
            del model
            first = folder
        else:      # same weights, another latent size: only config.json differs
            same_weights_folder(first, folder, sample_size=side)
        folders[side] = folder

    rows = []
    for side, folder in folders.items():
        outs = {impl: os.path.join(work, f"{impl}{side}.pt") for impl in ("diffusers", "minidit")}
        res = run_rounds(__file__, {impl: dict(impl=impl, folder=folder, latent=side, batch=args.batch,
                                               repeats=args.repeats, out=out) for impl, out in outs.items()},
                         args.rounds)
        err = max_abs_diff(outs["minidit"], outs["diffusers"])
        rows += comparison_rows(res, "diffusers", image=f"{side * 8}²")
        rows[-1]["max abs diff"] = f"{err:.1e}"
    name = f"DiT{' (tiny)' if args.tiny else '-XL/2'}, {shape['num_layers']} blocks"
    print(f"\n{name}, batch {args.batch}, fp32, {machine()}\n")
    print(markdown_table(rows, ["image", "impl", *COMPARISON_COLUMNS, "max abs diff"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
