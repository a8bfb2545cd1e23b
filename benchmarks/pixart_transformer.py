"""PixArt-Σ-XL/2 transformer on CPU: minidit vs diffusers on identical weights.

    python benchmarks/pixart_transformer.py               # full size (needs ~8 GB RAM, ~3 GB disk, minutes)
    python benchmarks/pixart_transformer.py --smoke       # a 2-block model, seconds: checks the script

One forward of the transformer as a CFG sampling step runs it: batch 2 (conditional + unconditional),
300 T5 tokens (caption masks: 40 and 1 real tokens), latents 32² and 64² (256² and 512² images;
presets PixArt-Sigma-XL-2-256x256 / -512-MS). Random weights are made once by diffusers and saved
with `save_pretrained`; minidit reads the same folder through `weights_loader.load_pixart`.

Every (implementation, size) case runs in a fresh interpreter: load, one warm-up forward, then
`malloc_trim` (so cached free heap cannot hide allocations), reset of the peak-RSS mark
(/proc/self/clear_refs), one measured forward, and `--repeats` timed forwards. Reported: median
forward time, that forward's peak RSS above the RSS before it (VmHWM - VmRSS: activations +
workspace), the process peak (weights included), and the largest output difference.
Requires Linux (/proc) and diffusers (a test-only oracle: minidit itself never imports it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {32: ("PixArt-Sigma-XL-2-256x256", 0.5), 64: ("PixArt-Sigma-XL-2-512-MS", 1.0)}
FULL = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, caption_channels=4096,
            cross_attention_dim=1152)
SMOKE = dict(num_attention_heads=2, attention_head_dim=72, num_layers=2, caption_channels=64, cross_attention_dim=144)

CHILD = r'''
import ctypes, gc, json, statistics, sys, time
import torch
impl, folder, side, caption_channels, repeats, threads, out_path = sys.argv[1:8]
side, caption_channels, repeats, threads = int(side), int(caption_channels), int(repeats), int(threads)
if threads > 0:
    torch.set_num_threads(threads)

if impl == "minidit":
    from weights_loader import load_pixart
    model = load_pixart(folder)
    run = lambda x, t, y, m: model(x, t, y, m)
else:
    from diffusers import PixArtTransformer2DModel
    model = PixArtTransformer2DModel.from_pretrained(folder).eval()
    run = lambda x, t, y, m: model(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=m).sample
g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, side, side, generator=g)
y = torch.randn(2, 300, caption_channels, generator=g)
mask = torch.zeros(2, 300, dtype=torch.long)
mask[0, :40] = 1                      # a 40-token prompt
mask[1, :1] = 1                       # the empty negative prompt: just </s>
t = torch.tensor([500, 500])
def rss_mib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) / 1024

libc = ctypes.CDLL("libc.so.6")
with torch.inference_mode():
    out = run(x, t, y, mask)          # warm-up
    del out
    gc.collect()
    libc.malloc_trim(0)               # hand freed heap back to the OS, so the next peak is the forward's own
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                  # reset VmHWM to the current RSS
    base = rss_mib("VmRSS")
    out = run(x, t, y, mask)
    peak_delta = rss_mib("VmHWM") - base
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run(x, t, y, mask)
        times.append(time.perf_counter() - t0)
torch.save(out, out_path)
print(json.dumps({"median_s": statistics.median(times), "peak_delta_mib": peak_delta,
                  "peak_rss_mib": rss_mib("VmHWM"), "threads": torch.get_num_threads()}))
'''


def make_weights(folder: Path, arch: dict, side: int, pe: float):
    """Random diffusers weights + a config.json for this latent size (the same tensors for every size)."""
    import torch
    from diffusers import PixArtTransformer2DModel
    weights = folder.parent / "weights.safetensors"
    torch.manual_seed(0)
    kw = dict(**arch, sample_size=side, interpolation_scale=pe, use_additional_conditions=False)
    if weights.exists():                                   # only the config differs: build it without weights
        with torch.device("meta"):
            PixArtTransformer2DModel(**kw).save_config(folder)
    else:
        model = PixArtTransformer2DModel(**kw)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        model.save_pretrained(folder)
        (folder / "diffusion_pytorch_model.safetensors").rename(weights)
    (folder / "diffusion_pytorch_model.safetensors").symlink_to(weights)


def run_case(impl, folder, side, caption_channels, repeats, threads, out_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", DIFFUSERS_VERBOSITY="error", TRANSFORMERS_VERBOSITY="error")
    p = subprocess.run([sys.executable, "-c", CHILD, impl, str(folder), str(side), str(caption_channels),
                        str(repeats), str(threads), str(out_path)], capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{impl} at {side}x{side} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="2 blocks, narrow captions: check the script in seconds")
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards per case (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per case (0 = torch's default)")
    ap.add_argument("--depth", type=int, default=None, help="override the number of blocks (28 at full size)")
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES))
    args = ap.parse_args(argv)
    arch = dict(SMOKE if args.smoke else FULL)
    if args.depth:
        arch["num_layers"] = args.depth
    import torch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            preset, pe = SIZES[side]
            folder = Path(tmp) / preset
            folder.mkdir()
            make_weights(folder, arch, side, pe)
            res = {impl: run_case(impl, folder, side, arch["caption_channels"], args.repeats, args.threads,
                                  Path(tmp) / f"{impl}-{side}.pt") for impl in ("minidit", "diffusers")}
            diff = (torch.load(Path(tmp) / f"minidit-{side}.pt") - torch.load(Path(tmp) / f"diffusers-{side}.pt"))
            rows.append((side, preset, res, diff.abs().max().item()))
    m, d = "minidit", "diffusers"
    print(f"\nPixArt-Σ {'(SMOKE) ' if args.smoke else ''}transformer ({arch['num_layers']} blocks, "
          f"width {arch['num_attention_heads'] * 72}), CPU fp32, batch 2 (CFG), "
          f"300 caption tokens, {rows[0][2][m]['threads']} threads, median of {args.repeats}\n")
    print("| latent (image) | preset | minidit s | diffusers s | time ratio | minidit peak MiB | diffusers peak MiB "
          "| memory ratio | process peak MiB (minidit / diffusers) | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for side, preset, res, diff in rows:
        print(f"| {side}² ({side * 8}²) | {preset} | {res[m]['median_s']:.3f} | {res[d]['median_s']:.3f} | "
              f"{res[m]['median_s'] / res[d]['median_s']:.2f} | {res[m]['peak_delta_mib']:.0f} | "
              f"{res[d]['peak_delta_mib']:.0f} | {res[m]['peak_delta_mib'] / max(res[d]['peak_delta_mib'], 1):.2f} | "
              f"{res[m]['peak_rss_mib']:.0f} / {res[d]['peak_rss_mib']:.0f} | {diff:.1e} |")
    print("\npeak = one forward's VmHWM above the RSS before it (activations + workspace); "
          "ratio = minidit / diffusers (< 1: minidit is faster / smaller).")


if __name__ == "__main__":
    main()
