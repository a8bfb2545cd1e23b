"""One denoising forward, direct vs sliding windows (`minidit/windows.py`), on a PixArt-Σ-shaped transformer.

    python benchmarks/windowed_denoise.py                    # the table in benchmarks/results/windowed_denoise.txt
    python benchmarks/windowed_denoise.py --tiny             # a narrow 1-block model (smoke test)
    python benchmarks/windowed_denoise.py --backend manual   # attention written out (scores materialised)
    python benchmarks/windowed_denoise.py --count-macs       # MACs counted on the meta device, also at 2K / 4K

The model: full width (1152, 16 heads of 72, MLP 4608, 300 T5-XXL tokens of 4096 channels) but `--depth`
blocks (4 by default instead of 28: the ratios do not depend on the depth, the absolute times do), fp32,
random weights, CPU. One forward as a CFG sampling step runs it: batch 2, timestep 500. The latent is
2x the window per side ("2K from 1K windows", scaled down: window 32 latent px = a 256² image, latent 64 =
512²; `--latent 128 --window 64` is the next size up). Each case runs in its own process
(`benchmarks/common.py`): the median of the timed forwards after a warm-up, the fastest of `--rounds`
processes (alternating order), and the peak resident-memory increase over one forward with glibc's
allocator pinned (`LIVE_MEMORY_ENV`), inputs and weights excluded.

What to expect (the module docstring of minidit/windows.py): n windows of T_w tokens instead of one
forward of T tokens. The linear layers cost ~ n T_w >= T (equal without overlap, more with it), the
self-attention n T_w^2 <= T^2, and the caption projection and cross-attention keys are recomputed for
every window. Peak memory is that of one window-sized forward (with `--per-call 1`).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import child_case, machine, markdown_table, measure, report, run_rounds  # noqa: E402

FULL = dict(hidden_size=1152, num_heads=16, caption_channels=4096)
TINY = dict(hidden_size=64, num_heads=2, caption_channels=32)


def child(case):
    import torch
    from minidit.attention import attention_backend
    from minidit.pixart import PixArt, PixArtConfig
    from minidit.windows import WindowedModel, tile_batch
    torch.manual_seed(0)
    side, window = case["latent"], case["window"]
    # the model "trained" at the window's size: its positions span [0, 32) at that size (PixArt-Σ's rule)
    config = PixArtConfig(input_size=window, depth=case["depth"], model_max_length=300,
                          pe_interpolation=window / 64, **case["shape"])
    model = PixArt(config).eval()
    with torch.no_grad():                       # non-zero everywhere (the official init zeroes the output)
        for p in model.parameters():
            p.normal_(0, 0.02)
    g = torch.Generator().manual_seed(0)
    B, L = 2, 300
    x = torch.randn(B, 4, side, side, generator=g)
    y = torch.randn(B, L, case["shape"]["caption_channels"], generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[0, :40], mask[1, :1] = True, True
    t = torch.tensor([500, 500])

    def network(xs, ts):
        return model(xs, ts, tile_batch(y, xs.shape[0]), tile_batch(mask, xs.shape[0]))
    if case["impl"] == "direct":
        run, windows = (lambda: network(x, t)), 1                               # noqa: E731
    else:
        windowed = WindowedModel(network, window, case["overlap"], blend="linear", patch=2,
                                 windows_per_call=case["per_call"])
        run, windows = (lambda: windowed(x, t)), len(windowed.grid(side, side))  # noqa: E731
    with attention_backend(case["backend"]):
        out, result = measure(run, case["repeats"])
    if case.get("out"):
        torch.save(out, case["out"])
    tokens = windows * (window // 2) ** 2 if case["impl"] != "direct" else (side // 2) ** 2
    report({**result, "windows": windows, "tokens": tokens})


def counted_macs(case) -> tuple[int, int]:
    """(multiply-accumulates of one forward, windows) of a case, counted by torch's FlopCounterMode on the
    meta device (shapes only: any size, no memory, no time; FLOPs / 2 = MACs, as DiT's "Gflops")."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from minidit.pixart import PixArt, PixArtConfig
    from minidit.windows import WindowedModel, tile_batch
    side, window = case["latent"], case["window"]
    with torch.device("meta"):
        model = PixArt(PixArtConfig(input_size=window, depth=case["depth"], model_max_length=300,
                                    pe_interpolation=window / 64, **case["shape"])).eval()
        x, y = torch.empty(2, 4, side, side), torch.empty(2, 300, case["shape"]["caption_channels"])
        mask, t = torch.ones(2, 300, dtype=torch.bool), torch.empty(2)

    def network(xs, ts):
        return model(xs, ts, tile_batch(y, xs.shape[0]), tile_batch(mask, xs.shape[0]))
    fn, windows = network, 1
    if case["impl"] != "direct":
        fn = WindowedModel(network, window, case["overlap"], patch=2, windows_per_call=case["per_call"])
        windows = len(fn.grid(side, side))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x, t)
    return counter.get_total_flops() // 2, windows


def mac_table(args) -> str:
    """Counted MACs of the measured cases and of the full-size PixArt-Σ (28 blocks) at 2048² and 4096²."""
    groups = [(f"measured shape ({args.depth} blocks), latent {args.latent}, window {args.window}", cases(args))]
    for latent, window, overlaps in ((256, 128, (0, 32)), (512, 256, (0, 64))):
        full = argparse.Namespace(**{**vars(args), "depth": 28, "latent": latent, "window": window, "tiny": False,
                                     "overlaps": ",".join(map(str, overlaps)), "per_call": 1})
        groups.append((f"PixArt-Σ-XL/2 (28 blocks): {latent * 8}² from {window * 8}² windows", cases(full)))
    rows = []
    for title, group in groups:
        direct = None
        for name, case in group.items():
            macs, windows = counted_macs(case)
            direct = direct or macs
            rows.append({"model and sizes": title, "path": name, "windows": windows, "TMAC per forward": f"{macs / 1e12:.3f}",
                         "MAC ratio": f"{macs / direct:.2f}"})
    return ("Multiply-accumulates of one CFG forward (batch 2, 300 caption tokens), counted on the meta device "
            "(torch.utils.flop_counter, FLOPs / 2)\n\n" + markdown_table(rows, list(rows[0])))


def cases(args) -> dict[str, dict]:
    common = dict(latent=args.latent, window=args.window, depth=args.depth, repeats=args.repeats,
                  backend=args.backend, shape=TINY if args.tiny else FULL, per_call=args.per_call)
    out = {"direct": dict(common, impl="direct", overlap=0)}
    for overlap in (int(o) for o in args.overlaps.split(",")):
        out[f"windows, overlap {overlap}"] = dict(common, impl="windowed", overlap=overlap)
    return out


def table(results: dict[str, dict], args) -> str:
    ref = results["direct"]
    rows = []
    for name, r in results.items():
        rows.append({"path": name, "windows": r["windows"], "tokens per forward step": r["tokens"],
                     "median (s)": r["median_s"], "peak extra (MiB)": r["peak_mib"],
                     "time ratio": f"{r['median_s'] / ref['median_s']:.2f}",
                     "memory ratio": f"{r['peak_mib'] / max(ref['peak_mib'], 0.1):.2f}"})
    shape = TINY if args.tiny else FULL
    head = (f"PixArt-Σ-shaped transformer (width {shape['hidden_size']}, {shape['num_heads']} heads, {args.depth} "
            f"blocks), fp32, batch 2 (CFG), 300 caption tokens, latent {args.latent}² in windows of {args.window}² "
            f"(linear blend, {args.per_call} window(s) per call), attention backend {args.backend}; {machine()}")
    return head + "\n\n" + markdown_table(rows, list(rows[0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="width 64, 2 heads (smoke test)")
    parser.add_argument("--depth", type=int, default=4, help="blocks (default %(default)s; PixArt-Σ has 28)")
    parser.add_argument("--latent", type=int, default=64, help="latent side of the direct path (default %(default)s)")
    parser.add_argument("--window", type=int, default=32, help="window side, latent px (default %(default)s)")
    parser.add_argument("--overlaps", type=str, default="0,8,16", help="window overlaps, latent px")
    parser.add_argument("--per-call", type=int, default=1, help="windows per network call (default %(default)s)")
    parser.add_argument("--backend", choices=["sdpa", "manual"], default="sdpa")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (median)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per case, alternating order")
    parser.add_argument("--count-macs", action="store_true",
                        help="only count the MACs (meta device, seconds), also of the full-size model at 2K and 4K")
    args = parser.parse_args(argv)
    if args.count_macs:
        text = mac_table(args)
        print(text)
        return text
    text = table(run_rounds(__file__, cases(args), args.rounds), args)
    print(text)
    return text


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
