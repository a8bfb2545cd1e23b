"""PixArt-Σ on one CUDA GPU: 20-step generation at 1024² and 2048², time and peak memory per stage.

    python benchmarks/pixart_gpu.py --weights PixArt-Sigma-XL-2-1024-MS --weights-2k PixArt-Sigma-XL-2-2K-MS
    python benchmarks/pixart_gpu.py                                   # random weights, full size
    python benchmarks/pixart_gpu.py --sizes 1024 --backend manual     # the naive attention, for contrast
    python benchmarks/pixart_gpu.py --keep-t5                         # T5 stays on the GPU between runs
    python benchmarks/pixart_gpu.py --tiny                            # tiny models on the CPU: checks the script

It runs `minidit.pipelines.pixart.PixArtPipeline` exactly as a user would (`from_pretrained` on a
diffusers folder: `huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-1024-MS --local-dir DIR`,
same for -2K-MS) and reports its `last_run_stats`, one row per size:
  1. text     T5-XXL (bfloat16) encodes the prompt and "" (300 tokens each). By default T5 is loaded
              for this stage and freed after it (staged memory); "T5 load" is that loading time,
              reported apart from the encoding.
  2. denoise  20 DPM-Solver++(2M) steps, classifier-free guidance 4.5 (batch 2), transformer in --dtype
              (float16: the official inference dtype), attention --backend.
  3. decode   SDXL-VAE decode in float32, in 512-px tiles above 2 Mpx (so at 2048²), then the
              resize/crop of resolution binning (a no-op at the square buckets).
Peaks are `torch.cuda.max_memory_allocated`, reset at the start of every stage (resident weights
included); "total" is the wall time of the whole call. Each size runs once to warm up (2 steps),
then --repeats measured times (the fastest is reported).

Without weights every model has random weights in the full released shape (T5-XXL 4.7 B, PixArt-XL/2
0.6 B, SDXL VAE 84 M) and a stand-in tokenizer (the prompt's word count as tokens): the work, time
and memory are those of real generation, which do not depend on the values.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import markdown_table  # noqa: E402
from minidit.attention import attention_backend  # noqa: E402
from minidit.pipelines.pixart import PixArtPipeline  # noqa: E402
from minidit.pixart import PRESETS, PixArt  # noqa: E402
from minidit.text.t5 import T5_TINY, T5_V1_1_XXL, T5EncoderModel, t5_weight_dtype  # noqa: E402
from minidit.vae import SDXL_VAE, AutoencoderKL, VAEConfig  # noqa: E402
from weights_loader.io import build_on_meta, load_into  # noqa: E402

SIZES = {1024: "PixArt-Sigma-XL-2-1024-MS", 2048: "PixArt-Sigma-XL-2-2K-MS"}
PROMPT = "a photo of an astronaut riding a horse on the moon"


class StandInTokenizer:
    """Random-weight runs have no spiece.model: one token per word + </s>, padded (ids do not matter)."""

    def __call__(self, texts, max_length: int):
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), max_length, dtype=torch.long)
        for i, text in enumerate(texts):
            n = min(len(text.split()) + 1, max_length)
            ids[i, :n], mask[i, :n] = torch.arange(3, 3 + n), 1
        return {"input_ids": ids, "attention_mask": mask}


def random_model(cls, config, dtype, device, keep=lambda key, dtype: dtype):
    """`cls(config)` with N(0, 0.02) weights made directly in `dtype` on `device` (no float32 copy)."""
    model = build_on_meta(cls, config)
    sd = {k: torch.randn(v.shape, device=device, dtype=keep(k, dtype)) * 0.02 for k, v in model.state_dict().items()}
    return load_into(model, sd, dtype=None, device=device, what="random weights").eval()


def random_pipeline(side: int, args, device) -> PixArtPipeline:
    dtype = getattr(torch, args.dtype)
    t5_dtype = getattr(torch, args.t5_dtype)
    config, t5_config, vae_config = PRESETS[SIZES[side * 4 if args.tiny else side]], T5_V1_1_XXL, SDXL_VAE
    if args.tiny:
        t5_config = T5_TINY
        config = dataclasses.replace(config, depth=2, hidden_size=144, num_heads=2, caption_channels=T5_TINY.d_model,
                                     input_size=side // 8)     # a "256/512-px model": its own bins
        vae_config = VAEConfig(ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, norm_num_groups=8,
                               scaling_factor=SDXL_VAE.scaling_factor)
    transformer = random_model(PixArt, config, dtype, device)
    transformer.y_embedder.has_null_caption = False        # as loaded from a diffusers folder
    vae = random_model(AutoencoderKL, vae_config, torch.float32, device)
    return PixArtPipeline(transformer, vae, StandInTokenizer(), keep_text_encoder=args.keep_t5,
                          text_encoder_loader=lambda: random_model(T5EncoderModel, t5_config, t5_dtype, device,
                                                                   keep=t5_weight_dtype))


def run_size(side: int, weights, args, device):
    if weights:
        pipe = PixArtPipeline.from_pretrained(weights, dtype=getattr(torch, args.dtype), device=device,
                                              text_encoder_dtype=getattr(torch, args.t5_dtype),
                                              keep_text_encoder=args.keep_t5)
    else:
        pipe = random_pipeline(side, args, device)
    weights_gib = sum(t.numel() * t.element_size() for t in pipe.transformer.state_dict().values()) / 2**30
    kw = dict(height=side, width=side, guidance_scale=args.guidance_scale, progress=False)
    with attention_backend(args.backend):
        pipe(PROMPT, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kw)    # warm-up
        best = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            pipe(PROMPT, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0), **kw)
            total = time.perf_counter() - t0
            if best is None or total < best[0]:
                best = (total, pipe.last_run_stats)
    del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return dict(side=side, weights_gib=weights_gib, total=best[0], stats=best[1], real=bool(weights))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES))
    ap.add_argument("--weights", help="diffusers PixArt-Sigma-XL-2-1024-MS folder (default: random weights)")
    ap.add_argument("--weights-2k", help="diffusers PixArt-Sigma-XL-2-2K-MS folder (default: random weights)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--guidance-scale", type=float, default=4.5)
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"], help="transformer")
    ap.add_argument("--t5-dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"],
                    help="float16 keeps T5's wo in float32 (minidit's fp16 policy)")
    ap.add_argument("--keep-t5", action="store_true", help="keep T5 loaded (no per-run load, more memory)")
    ap.add_argument("--backend", default="sdpa", choices=["sdpa", "manual"], help="minidit attention path")
    ap.add_argument("--tiny", action="store_true", help="tiny models, 2 steps, 256/512 px on the CPU")
    args = ap.parse_args(argv)
    if args.tiny:
        device, args.steps, args.dtype, args.t5_dtype = torch.device("cpu"), 2, "float32", "float32"
        args.weights = args.weights_2k = None
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        raise SystemExit("this benchmark needs a CUDA GPU (or --tiny); for CPU see benchmarks/pixart_transformer.py")
    rows = [run_size(side // 4 if args.tiny else side, args.weights if side == 1024 else args.weights_2k, args,
                     device) for side in args.sizes]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (TINY models: checks the script)"
    print(f"\nPixArt-Σ, {where}, transformer {args.dtype}, T5 {args.t5_dtype}, VAE float32, {args.steps} steps "
          f"DPM-Solver++(2M), CFG {args.guidance_scale} (batch 2), attention {args.backend}, "
          f"T5 {'kept' if args.keep_t5 else 'loaded per run, freed after encoding'}\n")
    columns = ["image", "weights", "transformer GiB", "T5 load s", "T5 encode s", "text peak GiB",
               "denoise s (s/step)", "denoise peak GiB", "decode s", "decode peak GiB", "tiled", "total s"]
    peak = lambda rec: "-" if rec["peak_gib"] is None else f"{rec['peak_gib']:.2f}"  # noqa: E731
    table = []
    for r in rows:
        text, den, dec = r["stats"]["text"], r["stats"]["denoise"], r["stats"]["decode"]
        load = text.get("t5_load_s")
        table.append(dict(zip(columns, (
            f"{r['side']}²", "real" if r["real"] else "random", f"{r['weights_gib']:.2f}",
            "-" if load is None else f"{load:.2f}", f"{text['seconds'] - (load or 0):.2f}", peak(text),
            f"{den['seconds']:.2f} ({den['seconds'] / args.steps:.3f})", peak(den), f"{dec['seconds']:.2f}",
            peak(dec), dec["tiled"], f"{r['total']:.2f}"))))
    print(markdown_table(table, columns))
    print(f"\nmemory: {rows[0]['stats']['memory']}, reset at every stage; resident weights included.")


if __name__ == "__main__":
    main()
