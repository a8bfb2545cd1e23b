"""PixArt-Σ-XL/2 transformer forward: minidit vs diffusers' PixArtTransformer2DModel on identical weights.

    python benchmarks/pixart_transformer.py             # 256² and 512² (latents 32², 64²), CPU fp32
    python benchmarks/pixart_transformer.py --tiny      # a 2-block model, for a quick smoke test
    python benchmarks/pixart_transformer.py --depth 4   # full width, fewer blocks

One forward as a CFG sampling step runs it: batch 2 (conditional + unconditional), 300 T5 tokens
with their masks (a 40-token prompt and the empty negative prompt, 1 token), timestep 500. The
latent sizes use their own presets (PixArt-Sigma-XL-2-256x256: pe_interpolation 0.5;
PixArt-Sigma-XL-2-512-MS: 1.0); the weights are the same. Random weights are written once in the
diffusers layout (`save_pretrained`); minidit reads the same file through `weights_loader.load_pixart`,
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
                               measure, report, run_rounds, same_weights_folder, touch)

SIZES = {32: 0.5, 64: 1.0}                     # latent side -> pe_interpolation (Σ-256, Σ-512-MS presets)
XL2 = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, caption_channels=4096,
           cross_attention_dim=1152)
TINY = dict(num_attention_heads=2, attention_head_dim=72, num_layers=2, caption_channels=64, cross_attention_dim=144)


def child(case):
    import torch
    g = torch.Generator().manual_seed(0)
    B, side, L = 2, case["latent"], 300
    x = torch.randn(B, 4, side, side, generator=g)
    y = torch.randn(B, L, case["caption_channels"], generator=g)
    mask = torch.zeros(B, L, dtype=torch.long)
    mask[0, :40], mask[1, :1] = 1, 1          # a 40-token prompt; "" is just </s>
    t = torch.tensor([500, 500])
    if case["impl"] == "diffusers":
        from diffusers import PixArtTransformer2DModel
        model = PixArtTransformer2DModel.from_pretrained(case["folder"]).eval()
        run = lambda: model(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask).sample  # noqa: E731
    else:
        from weights_loader import load_pixart
        model = load_pixart(case["folder"])
        run = lambda: model(x, t, y, mask)                                           # noqa: E731
    touch(model)                     # page in memory-mapped weights: they are not activation memory
    out, result = measure(run, case["repeats"])
    torch.save(out, case["out"])
    report(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="2-block width-144 model (smoke test)")
    parser.add_argument("--depth", type=int, help="override the number of blocks (28)")
    parser.add_argument("--latents", type=str, default="32,64", help="latent sides (32 = 256², 64 = 512²)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating order")
    args = parser.parse_args()

    import torch
    from diffusers import PixArtTransformer2DModel
    shape = dict(TINY if args.tiny else XL2)
    if args.depth:
        shape["num_layers"] = args.depth
    work = tempfile.mkdtemp(prefix="pixart_bench_")
    torch.manual_seed(0)
    folders, first = {}, None
    for side in (int(s) for s in args.latents.split(",")):
        if side not in SIZES:
            parser.error(f"latent side {side} is not one of {sorted(SIZES)}")
        folder = os.path.join(work, f"latent{side}")
        config = dict(shape, sample_size=side, interpolation_scale=SIZES[side], use_additional_conditions=False)
        if first is None:
            model = PixArtTransformer2DModel(**config)
            with torch.no_grad():              # non-zero everywhere (the output layer starts at 0 otherwise)
                for p in model.parameters():
                    p.normal_(0, 0.02)
            model.save_pretrained(folder)
            del model
            first = folder
        else:      # same weights, another latent size: only config.json differs
            same_weights_folder(first, folder, sample_size=side, interpolation_scale=SIZES[side])
        folders[side] = folder

    rows = []
    for side, folder in folders.items():
        outs = {impl: os.path.join(work, f"{impl}{side}.pt") for impl in ("diffusers", "minidit")}
        res = run_rounds(__file__, {impl: dict(impl=impl, folder=folder, latent=side, repeats=args.repeats,
                                               caption_channels=shape["caption_channels"], out=out)
                                    for impl, out in outs.items()}, args.rounds)
        err = max_abs_diff(outs["minidit"], outs["diffusers"])
        rows += comparison_rows(res, "diffusers", image=f"{side * 8}²")
        rows[-1]["max abs diff"] = f"{err:.1e}"
    name = f"PixArt-Σ{' (tiny)' if args.tiny else '-XL/2'} transformer, {shape['num_layers']} blocks"
    print(f"\n{name}, batch 2 (CFG), 300 caption tokens, fp32, {machine()}\n")
    print(markdown_table(rows, ["image", "impl", *COMPARISON_COLUMNS, "max abs diff"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
