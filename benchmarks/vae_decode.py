"""VAE decode on CPU: time and peak memory, untiled vs tiled, minidit vs diffusers on identical weights.

    python benchmarks/vae_decode.py                      # SDXL-VAE shape, 512^2 1024^2 2048^2 (slow: minutes)
    python benchmarks/vae_decode.py --weights sdxl-vae   # the real weights (huggingface-cli download
                                                         #   stabilityai/sdxl-vae --local-dir sdxl-vae)
    python benchmarks/vae_decode.py --tiny --sizes 128   # smoke test (seconds)

What it measures. Each case runs in a fresh Python process (so no allocator state leaks between
cases). Inside it the model and the latent are created first; then the peak-RSS high-water mark is
reset (`/proc/self/clear_refs` = 5), a warm-up decode of an 8x8 latent runs (one-time kernel setup,
excluded from the time) and then the measured decode, under `torch.inference_mode()`. "peak Δ" is
VmHWM after the decode minus the RSS before the warm-up: the memory the decode itself needed
(activations, attention workspace, the output) on top of weights and input. "peak RSS" is the whole
process (torch, weights, ...). Time is the wall-clock of the decode (best of --repeats). Without
--weights the VAE has random weights in the full SDXL-VAE shape (83.7 M parameters: the compute and
memory of the real one), created once by diffusers with a fixed seed and saved with
`save_pretrained`; minidit loads the same folder through `weights_loader.load_vae`.

Cases: minidit untiled and tiled (tiles of --tile latent pixels = 8x that in the image, --overlap
latent pixels of overlap) at every size; diffusers' `AutoencoderKL.decode` untiled at --diffusers-sizes
(default 512) with the same weights and latent, and the largest output difference between the two.

Memory model for the 4096^2 estimate. Untiled, every activation scales with the number of output
pixels P (convolutions at each level hold C_level x P/4^level floats; the mid-block attention uses
SDPA, whose CPU kernels need O(P) memory, not O(P^2)), so peak Δ(P) ≈ a + b·P; a and b are fitted
by least squares to the measured sizes and evaluated at P = 4096^2. Tiled, the decoder only ever sees
one tile, so peak Δ(P) ≈ c + d·P where c is one tile's decode and d·P the float32 blending buffers
(3·4 B per pixel for the weighted sum of RGB tiles, divided in place, and 4 B for the weight sum:
d ≈ 16 B); the same fit gives the 4096^2 estimate. Both are printed with the
fitted coefficients, so the extrapolation can be checked against the measured points.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (ChildFailed, child_case, machine, markdown_table, max_abs_diff, peak_memory,  # noqa: E402
                               report, run_child, touch)

FULL = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)
TINY = dict(block_out_channels=(32, 64, 64, 64), layers_per_block=1, norm_num_groups=32)


def make_random_vae(folder: Path, tiny: bool) -> None:
    import torch
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    shape = TINY if tiny else FULL
    vae = AutoencoderKL(latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025, **shape)
    vae.save_pretrained(folder)


def child(case: dict) -> None:
    """One decode in this (fresh) process."""
    import torch
    torch.set_num_threads(case["threads"])
    side = case["size"] // 8
    if case["impl"] == "minidit":
        from weights_loader import load_vae
        vae = load_vae(case["weights"])
        def decode(z):
            return vae.decode(z, tile=case["tile"], overlap=case["overlap"]) if case["tiled"] else vae.decode(z)
    else:
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(case["weights"]).eval()
        if case["tiled"]:
            vae.enable_tiling()
            vae.tile_latent_min_size, vae.tile_sample_min_size = case["tile"], case["tile"] * 8
            vae.tile_overlap_factor = case["overlap"] / case["tile"]
        def decode(z):
            return vae.decode(z).sample
    channels = vae.config.z_channels if case["impl"] == "minidit" else vae.config.latent_channels
    z = torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(0))
    touch(vae)                     # page in memory-mapped weights: they are not activation memory
    with torch.inference_mode(), peak_memory() as memory:  # from here: weights + latent, nothing decoded yet
        decode(z[..., :8, :8])                             # warm-up on a tiny latent (one-time kernel setup;
        times = []                                         # counted in the peak, which the real decode exceeds)
        for _ in range(case["repeats"]):
            t0 = time.perf_counter()
            image = decode(z)
            times.append(time.perf_counter() - t0)
    if case.get("save"):
        torch.save(image.clone(), case["save"])
    report({"time_s": min(times), "peak_delta_mib": memory["peak_mib"], "peak_rss_mib": memory["peak_rss_mib"]})


def run_case(case: dict) -> dict:
    return {**case, **run_child(__file__, case, threads=case["threads"])}


def fit_line(points):
    """Least-squares a + b*x through [(x, y), ...]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="output sides in pixels")
    p.add_argument("--diffusers-sizes", type=int, nargs="*", default=[512])
    p.add_argument("--tile", type=int, default=64, help="tile side in latent pixels (64 = 512 px)")
    p.add_argument("--overlap", type=int, default=16, help="overlap in latent pixels (diffusers: 25 %%)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--weights", type=str, default=None, help="a diffusers AutoencoderKL folder (default: random)")
    p.add_argument("--tiny", action="store_true", help="a small random VAE, for smoke tests")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="vae_bench_"))
    weights = args.weights
    if weights is None:
        weights = str(tmp / "vae")
        make_random_vae(Path(weights), args.tiny)
    base = dict(weights=weights, tile=args.tile, overlap=args.overlap, threads=args.threads, repeats=args.repeats)
    rows = []
    for size in args.sizes:
        for tiled in (False, True):
            save = str(tmp / f"minidit_{size}.pt") if not tiled and size in args.diffusers_sizes else None
            try:
                rows.append(run_case({**base, "impl": "minidit", "size": size, "tiled": tiled, "save": save}))
            except ChildFailed as e:
                if e.returncode != -9:
                    raise
                # An untiled decode that does not fit in this machine's RAM is a result, not an error.
                rows.append({"impl": "minidit", "size": size, "tiled": tiled, "killed": True})
            print(f"done: minidit {size} tiled={tiled}", file=sys.stderr)
    for size in args.diffusers_sizes:
        rows.append(run_case({**base, "impl": "diffusers", "size": size, "tiled": False,
                              "save": str(tmp / f"diffusers_{size}.pt")}))
        print(f"done: diffusers {size}", file=sys.stderr)

    import torch
    torch.set_num_threads(args.threads)              # so that machine() reports the children's setting
    which = args.weights or f"random {'tiny' if args.tiny else 'SDXL-VAE-shape'}"
    print(f"\nVAE decode, {which} weights, float32, {machine()}; tiles {args.tile} latent px ({args.tile * 8} px), "
          f"overlap {args.overlap} ({args.overlap * 8} px)\n")
    columns = ["implementation", "output", "tiled", "time (s)", "peak Δ (MiB)", "peak RSS (MiB)"]
    def cells(r):
        if r.get("killed"):
            return (r["impl"], f"{r['size']}²", "yes" if r["tiled"] else "no", "-",
                    "killed: out of memory", "-")
        return (r["impl"], f"{r['size']}²", "yes" if r["tiled"] else "no", f"{r['time_s']:.2f}",
                f"{r['peak_delta_mib']:.0f}", f"{r['peak_rss_mib']:.0f}")
    print(markdown_table([dict(zip(columns, cells(r))) for r in rows], columns))
    for size in args.diffusers_sizes:
        ours = next((r for r in rows if r["impl"] == "minidit" and r["size"] == size and not r["tiled"] and not r.get("killed")), None)
        ref = next(r for r in rows if r["impl"] == "diffusers" and r["size"] == size)
        if ours is None:
            continue
        diff = max_abs_diff(ours["save"], ref["save"])
        print(f"\n{size}²: minidit / diffusers time {ours['time_s'] / ref['time_s']:.2f}, "
              f"peak Δ {ours['peak_delta_mib'] / max(ref['peak_delta_mib'], 1e-9):.2f}; "
              f"max |minidit - diffusers| = {diff:.2e}")
    print("\nMemory model (peak Δ ≈ a + b·pixels, least squares over the measured sizes):")
    for tiled in (False, True):
        pts = [(r["size"] ** 2, r["peak_delta_mib"]) for r in rows
               if r["impl"] == "minidit" and r["tiled"] == tiled and not r.get("killed")]
        if len(pts) < 2:
            print(f"  {'tiled' if tiled else 'untiled'}: measure at least two sizes to fit the model")
            continue
        a, b = fit_line(pts)
        note = ""
        if tiled and b < 16 / 2**20:       # the blending buffers alone cost 16 B per output pixel
            b = 16 / 2**20
            a = sum(y - b * x for x, y in pts) / len(pts)
            note = " (fitted slope below the 16 B/pixel of the blending buffers: that floor is used)"
        print(f"  {'tiled  ' if tiled else 'untiled'}: a = {a:.0f} MiB, b = {b * 2**20:.1f} B/pixel -> "
              f"4096²: {(a + b * 4096**2) / 1024:.1f} GiB{note}")
    return 0


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
