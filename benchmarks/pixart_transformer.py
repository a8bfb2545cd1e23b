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
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (child_case, machine, markdown_table, median, peak_since, report,  # noqa: E402
                               reset_peak, run_child, time_calls, touch)

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
    with torch.no_grad():
        base = reset_peak()          # before the warm-up: memory the allocator keeps after it counts too
        out = run()                                                                  # warm-up, kept for the check
        times = time_calls(run, repeats=case["repeats"], warmup=0)
        peak = peak_since(base)
    torch.save(out, case["out"])
    report({"median_s": round(median(times), 3), "times": [round(s, 3) for s in times], "peak_mib": peak})


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
            os.makedirs(folder)
            cfg = json.load(open(os.path.join(first, "config.json")))
            json.dump(dict(cfg, sample_size=side, interpolation_scale=SIZES[side]),
                      open(os.path.join(folder, "config.json"), "w"))
            os.symlink(os.path.join(first, "diffusion_pytorch_model.safetensors"),
                       os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        folders[side] = folder

    rows = []
    for side, folder in folders.items():
        res = {}
        # Alternate the order over rounds and keep each side's fastest round: on a shared machine the
        # load drifts, and a fixed order would charge the drift to one implementation.
        for r in range(args.rounds):
            for impl in ("diffusers", "minidit")[:: 1 if r % 2 == 0 else -1]:
                out = os.path.join(work, f"{impl}{side}.pt")
                got = run_child(__file__, dict(impl=impl, folder=folder, latent=side, repeats=args.repeats,
                                               caption_channels=shape["caption_channels"], out=out))
                if impl not in res or got["median_s"] < res[impl]["median_s"]:
                    res[impl] = got
                res[impl]["out"] = torch.load(out, weights_only=True)
        err = (res["minidit"]["out"] - res["diffusers"]["out"]).abs().max().item()
        for impl in ("diffusers", "minidit"):
            rows.append({"image": f"{side * 8}²", "impl": impl, "median forward (s)": res[impl]["median_s"],
                         "peak extra memory (MiB)": res[impl]["peak_mib"],
                         "time ratio": "" if impl == "diffusers" else
                         f"{res['minidit']['median_s'] / res['diffusers']['median_s']:.2f}",
                         "memory ratio": "" if impl == "diffusers" else
                         f"{res['minidit']['peak_mib'] / max(res['diffusers']['peak_mib'], 0.1):.2f}",
                         "max |diff|": "" if impl == "diffusers" else f"{err:.1e}"})
    name = f"PixArt-Σ{' (tiny)' if args.tiny else '-XL/2'} transformer, {shape['num_layers']} blocks"
    print(f"\n{name}, batch 2 (CFG), 300 caption tokens, fp32, {machine()}\n")
    print(markdown_table(rows, ["image", "impl", "median forward (s)", "peak extra memory (MiB)",
                                "time ratio", "memory ratio", "max |diff|"]))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
