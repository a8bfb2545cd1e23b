"""PixArt-Σ on one CUDA GPU: 20-step generation at 1024² and 2048², time and peak memory per stage.

    python benchmarks/pixart_gpu.py                                   # random weights
    python benchmarks/pixart_gpu.py --weights PixArt-Sigma-XL-2-1024-MS.pth --weights-2k PixArt-Sigma-XL-2-2K-MS.pth
    python benchmarks/pixart_gpu.py --sizes 1024 --backend manual     # the naive attention, for contrast
    python benchmarks/pixart_gpu.py --tiny                           # 2 tiny blocks on CPU: checks the script

Stages, each with its own `torch.cuda.max_memory_allocated` (reset in between), as the pipeline
will stage them (encode the prompt, free T5, denoise, decode):
  1. text     T5-XXL encoding of the prompt and "" -> (2, 300, 4096).
  2. denoise  20 DPM-Solver++(2M) steps (minidit.samplers.dpm_solver_sample, diffusers' "linspace"
              grid), classifier-free guidance 4.5 with the batch of 2, transformer in `--dtype`.
  3. decode   SDXL-VAE decode of the (1, 4, H/8, W/8) latent.
Stages 1 and 3 need minidit's T5 and VAE, which land with the PixArt pipeline
(`minidit.pipelines.pixart`, issue 5 §4). Until then they are reported as "not run" and the
denoise stage gets random caption states of the right shape; with real weights the timing and
memory of the transformer are exactly those of real generation (the work does not depend on
the values). When the pipeline exists, replace `encode_prompt` / `decode` below by its calls.
Weights: an original `.pth` or a diffusers folder for each size (else random, same shapes).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from minidit.attention import attention_backend
from minidit.diffusion import get_beta_schedule, make_schedule
from minidit.guidance import cfg
from minidit.pixart import PRESETS, PixArt
from minidit.samplers import dpm_solver_sample

SIZES = {1024: "PixArt-Sigma-XL-2-1024-MS", 2048: "PixArt-Sigma-XL-2-2K-MS"}
GiB = 2**30


def encode_prompt(prompt: str, device):
    """Stage 1 placeholder: T5("prompt") and T5("") with their masks. Plug in the pipeline's encoder here."""
    return None


def decode(latents):
    """Stage 3 placeholder: the SDXL VAE decode. Plug in the pipeline's (tiled) decoder here."""
    return None


def build_transformer(name: str, weights, dtype, device, tiny=False):
    if weights:
        from weights_loader import load_pixart
        return load_pixart(weights, dtype=dtype, device=device)
    config = PRESETS[name]
    if tiny:
        config = dataclasses.replace(config, depth=2, hidden_size=144, num_heads=2)
    with torch.device(device):
        model = PixArt(config)
    with torch.no_grad():                              # the official init zeroes the output layer
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.to(dtype).eval()


def stage(fn, device):
    """Run fn(); return (result, seconds, peak GiB of this stage; 0 off CUDA)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0, torch.cuda.max_memory_allocated(device) / GiB if cuda else 0.0


def run_size(side: int, weights, args, device):
    name = SIZES[side * 4 if args.tiny else side]
    dtype = getattr(torch, args.dtype)
    model = build_transformer(name, weights, dtype, device, args.tiny)
    weights_gib = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / GiB
    text = encode_prompt("a photo of an astronaut riding a horse on the moon", device)
    g = torch.Generator(device).manual_seed(0)
    if text is None:                                   # stand-in for T5 until the pipeline lands
        y = torch.randn(2, 300, model.config.caption_channels, generator=g, device=device, dtype=dtype)
        mask = torch.zeros(2, 300, dtype=torch.bool, device=device)
        mask[0, :20], mask[1, :1] = True, True         # a 20-token prompt, "" (= </s>)
    else:
        y, mask = text
    abar = make_schedule(get_beta_schedule("linear", 1000)).alphas_cumprod
    x_T = torch.randn(1, 4, side // 8, side // 8, generator=g, device=device)

    def model_fn(x, t):
        out = model(torch.cat([x, x]).to(dtype), torch.cat([t, t]), y, mask)[:, :4].float()
        cond, uncond = out.chunk(2)
        return cfg(cond, uncond, args.guidance_scale)

    def denoise():
        with torch.inference_mode(), attention_backend(args.backend):
            return dpm_solver_sample(model_fn, x_T, abar, args.steps, progress=False)

    stage(denoise, device)                             # warm-up (kernels, allocator)
    latents, t_denoise, peak_denoise = stage(denoise, device)
    image, t_decode, peak_decode = stage(lambda: decode(latents), device)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ran = image is not None
    return dict(side=side, name=name, weights_gib=weights_gib, t_denoise=t_denoise, peak_denoise=peak_denoise,
                t_decode=t_decode if ran else None, peak_decode=peak_decode if ran else None, text=text is not None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES))
    ap.add_argument("--weights", help="PixArt-Sigma-XL-2-1024-MS .pth or diffusers folder (default: random)")
    ap.add_argument("--weights-2k", help="PixArt-Sigma-XL-2-2K-MS .pth or diffusers folder (default: random)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance-scale", type=float, default=4.5)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--backend", default="sdpa", choices=["sdpa", "manual"], help="minidit attention path")
    ap.add_argument("--tiny", action="store_true", help="2 narrow blocks, 2 steps, 256/512 px on the CPU")
    args = ap.parse_args(argv)
    if args.tiny:
        device, args.steps, args.dtype, args.weights, args.weights_2k = torch.device("cpu"), 2, "float32", None, None
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("this benchmark needs a CUDA GPU; for CPU see benchmarks/pixart_transformer.py")
    sizes = [side // 4 for side in args.sizes] if args.tiny else args.sizes
    rows = [run_size(side, args.weights if side == 1024 else args.weights_2k, args, device) for side in sizes]
    fmt = lambda v, f: "not run" if v is None else f % v  # noqa: E731
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (TINY: 2 narrow blocks)"
    print(f"\nPixArt-Σ, {where}, {args.dtype}, {args.steps} steps DPM-Solver++(2M), "
          f"CFG {args.guidance_scale} (batch 2), attention {args.backend}\n")
    print("| image | checkpoint | weights GiB | T5 encode | denoise s (s/step) | denoise peak GiB | VAE decode s "
          "| decode peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']}² | {r['name']} | {r['weights_gib']:.2f} | {'run' if r['text'] else 'not run'} | "
              f"{r['t_denoise']:.2f} ({r['t_denoise'] / args.steps:.3f}) | {r['peak_denoise']:.2f} | "
              f"{fmt(r['t_decode'], '%.2f')} | {fmt(r['peak_decode'], '%.2f')} |")
    print("\nT5 and VAE stages: 'not run' until minidit's pipeline (T5 + VAE) lands; peaks are "
          "torch.cuda.max_memory_allocated per stage.")


if __name__ == "__main__":
    main()
