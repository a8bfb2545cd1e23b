"""Peak memory of loading full-size checkpoints, against the model's size in the dtype it is loaded in.

    python benchmarks/load_memory.py --make            # write the random checkpoints (once, ~14 GB on disk)
    python benchmarks/load_memory.py                   # measure every case with this tree's loaders
    python benchmarks/load_memory.py --before /work/main   # ... and with another checkout's, side by side
    python benchmarks/load_memory.py --clean           # delete the checkpoints

The checkpoints (random values, official layouts, under --dir, default /tmp/minidit-bench/):
  * PixArt-Σ-XL-2-1024-MS transformer (611 M parameters), float32, twice: the original `.pth`
    (`{"state_dict": ...}` in minidit's = the official keys, with the stored `pos_embed` table;
    tests/helpers/layouts/pixart.py) and a diffusers `transformer/` folder (split q/k/v, renamed keys,
    the same values), both written with torch.save / safetensors' save_file;
  * the T5-XXL encoder (t5-v1_1-xxl's shape: 24 blocks of width 4096, 4.76 B parameters) in bfloat16,
    as a transformers-style sharded safetensors folder (config.json, model.safetensors.index.json and
    10 shards), written shard by shard so that no more than one shard is ever in memory;
  * the SDXL VAE (83.7 M parameters), a diffusers `AutoencoderKL` folder from `save_pretrained`, float32.

What is measured. Each case runs in its own Python process (`common.run_child`, with
`LIVE_MEMORY_ENV`: freed tensors go back to the system at once). The child imports the loaders of
the checkout it is given (`--before` or this tree), then measures the peak resident set (VmHWM,
reset by `/proc/self/clear_refs`, `common.peak_memory`) during one `load_*` call, over the RSS just
before it: "peak Δ". RSS counts anonymous memory (the tensors) *and* resident pages of memory-mapped
files ("RssFile": safetensors' `get_tensor` and `torch.load(mmap=True)` return views of a map of
the file), so a loader that keeps the whole file mapped while it casts is charged for it, although
the kernel could drop those pages (they are clean copies of the file on disk). "after" is RSS after
the call, its split into anonymous / file pages from /proc/self/status. The files were just written
or read, so they are in the page cache: the times are of a warm disk. "model" is the loaded model's
parameters and buffers in the target dtype; "peak / model" is the ratio the streaming loaders aim to
bring to ~1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import (LIVE_MEMORY_ENV, child_case, machine, markdown_table, peak_memory, report,  # noqa: E402
                               run_child)

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)
T5_SHARDS = 10


# --------------------------------------------------------------------------------------------
# Writing the checkpoints
# --------------------------------------------------------------------------------------------

def make_pixart(folder: Path) -> None:
    """PixArt-Σ-XL-2-1024-MS: the original .pth and a diffusers transformer/ folder, float32."""
    import torch
    from safetensors.torch import save_file
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.layouts.pixart import documented_original_keys, original_to_diffusers
    from minidit.embed import get_2d_sincos_pos_embed
    from minidit.pixart import PRESETS
    c = PRESETS["PixArt-Sigma-XL-2-1024-MS"]
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in documented_original_keys(c).items()}
    sd["pos_embed"] = get_2d_sincos_pos_embed(c.hidden_size, c.base_size, c.base_size, c.pe_interpolation)[None].float()
    torch.save({"state_dict": sd}, folder / "PixArt-Sigma-XL-2-1024-MS.pth")
    transformer = folder / "PixArt-Sigma-XL-2-1024-MS" / "transformer"
    transformer.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in original_to_diffusers(sd, c.depth).items()},
              transformer / "diffusion_pytorch_model.safetensors")
    config = {"_class_name": "PixArtTransformer2DModel", "activation_fn": "gelu-approximate", "attention_bias": True,
              "attention_head_dim": 72, "attention_type": "default", "caption_channels": 4096,
              "cross_attention_dim": 1152, "in_channels": 4, "interpolation_scale": 2, "norm_type": "ada_norm_single",
              "norm_elementwise_affine": False, "norm_eps": 1e-6, "num_attention_heads": 16, "num_layers": 28,
              "out_channels": 8, "patch_size": 2, "sample_size": 128, "use_additional_conditions": False}
    (transformer / "config.json").write_text(json.dumps(config, indent=2))


def t5_shapes(c: dict) -> dict:
    """transformers' T5EncoderModel keys of a T5 v1.1 encoder, with shapes (what save_pretrained writes)."""
    d, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
    shapes = {"shared.weight": (c["vocab_size"], d)}
    for i in range(c["num_layers"]):
        b = f"encoder.block.{i}.layer."
        for n in "qkv":
            shapes[f"{b}0.SelfAttention.{n}.weight"] = (inner, d)
        shapes[f"{b}0.SelfAttention.o.weight"] = (d, inner)
        if i == 0:
            shapes[f"{b}0.SelfAttention.relative_attention_bias.weight"] = (32, c["num_heads"])
        shapes[f"{b}0.layer_norm.weight"] = (d,)
        shapes[f"{b}1.DenseReluDense.wi_0.weight"] = (ff, d)
        shapes[f"{b}1.DenseReluDense.wi_1.weight"] = (ff, d)
        shapes[f"{b}1.DenseReluDense.wo.weight"] = (d, ff)
        shapes[f"{b}1.layer_norm.weight"] = (d,)
    shapes["encoder.final_layer_norm.weight"] = (d,)
    return shapes


def make_t5(folder: Path, c: dict = T5_XXL, shards: int = T5_SHARDS, dtype: str = "bfloat16") -> None:
    """A transformers-style sharded safetensors T5 encoder folder, written one shard at a time."""
    import math
    import torch
    from safetensors.torch import save_file
    folder.mkdir(parents=True)
    shapes = t5_shapes(c)
    total = sum(math.prod(s) for s in shapes.values())
    per_shard, names, weight_map = total / shards, list(shapes), {}
    g, i = torch.Generator().manual_seed(0), 0
    for n in range(shards):
        name = f"model-{n + 1:05d}-of-{shards:05d}.safetensors"
        part, size = {}, 0
        while i < len(names) and (size < per_shard or n == shards - 1):
            shape = shapes[names[i]]
            part[names[i]] = (torch.randn(shape, generator=g) * 0.05 + (1.0 if len(shape) == 1 else 0.0)).to(
                getattr(torch, dtype))
            weight_map[names[i]] = name
            size += math.prod(shape)
            i += 1
        save_file(part, folder / name, metadata={"format": "pt"})
        del part
    index = {"metadata": {"total_size": total * torch.finfo(getattr(torch, dtype)).bits // 8}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {"architectures": ["T5EncoderModel"], "model_type": "t5", "feed_forward_proj": "gated-gelu",
              "dense_act_fn": "gelu_new", "is_gated_act": True, "layer_norm_epsilon": 1e-6,
              "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "dtype": dtype,
              "tie_word_embeddings": False, **c}
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def make_vae(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    AutoencoderKL(latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                  layers_per_block=2, scaling_factor=0.13025).save_pretrained(folder)


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def child(case: dict) -> None:
    sys.path.insert(0, case["code"])                  # whose loaders: this tree's, or --before's
    import torch
    import weights_loader
    assert os.path.dirname(os.path.dirname(os.path.abspath(weights_loader.__file__))) == os.path.abspath(case["code"])
    load = getattr(weights_loader, case["loader"])
    dtype = getattr(torch, case["dtype"])
    t0 = time.perf_counter()
    with peak_memory() as memory:
        model = load(case["source"], dtype=dtype)
    seconds = time.perf_counter() - t0
    tensors = [*model.parameters(), *model.buffers()]
    report({"model_mib": sum(t.numel() * t.element_size() for t in tensors) / MiB,
            "params_m": sum(t.numel() for t in model.parameters()) / 1e6,
            "peak_mib": memory["peak_mib"], "after_mib": status_mib("VmRSS") - memory["start_gib"] * 1024,
            "after_anon_mib": status_mib("RssAnon"), "after_file_mib": status_mib("RssFile"), "seconds": seconds})


def cases(root: Path) -> list[dict]:
    pth, folder = root / "PixArt-Sigma-XL-2-1024-MS.pth", root / "PixArt-Sigma-XL-2-1024-MS"
    return [dict(model="PixArt-Σ-XL-2 transformer", layout="original .pth (fp32)", loader="load_pixart",
                 source=str(pth), dtype="bfloat16"),
            dict(model="PixArt-Σ-XL-2 transformer", layout="original .pth (fp32)", loader="load_pixart",
                 source=str(pth), dtype="float32"),
            dict(model="PixArt-Σ-XL-2 transformer", layout="diffusers folder (fp32)", loader="load_pixart",
                 source=str(folder), dtype="bfloat16"),
            dict(model="PixArt-Σ-XL-2 transformer", layout="diffusers folder (fp32)", loader="load_pixart",
                 source=str(folder), dtype="float32"),
            dict(model="T5-XXL encoder", layout="transformers shards (bf16)", loader="load_t5",
                 source=str(root / "t5-v1_1-xxl"), dtype="bfloat16"),
            dict(model="SDXL VAE", layout="diffusers folder (fp32)", loader="load_vae", source=str(root / "sdxl-vae"),
                 dtype="float32"),
            dict(model="SDXL VAE", layout="diffusers folder (fp32)", loader="load_vae", source=str(root / "sdxl-vae"),
                 dtype="bfloat16")]


COLUMNS = ["model", "layout", "dtype", "code", "model (MiB)", "peak Δ (MiB)", "peak / model", "after Δ (MiB)",
           "RSS anon / file after (MiB)", "load (s)"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path("/tmp/minidit-bench"))
    p.add_argument("--make", action="store_true", help="write the checkpoints into --dir")
    p.add_argument("--clean", action="store_true", help="delete the checkpoints in --dir")
    p.add_argument("--before", type=str, default=None, help="another checkout whose loaders to measure too")
    p.add_argument("--only", type=str, default=None, help="measure only the cases whose model contains this")
    args = p.parse_args(argv)
    root = args.dir
    if args.clean:
        for name in ("PixArt-Sigma-XL-2-1024-MS.pth", "PixArt-Sigma-XL-2-1024-MS", "t5-v1_1-xxl", "sdxl-vae"):
            path = root / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        return 0
    if args.make:
        root.mkdir(parents=True, exist_ok=True)
        for name, make in [("PixArt-Sigma-XL-2-1024-MS.pth", make_pixart), ("t5-v1_1-xxl", make_t5),
                           ("sdxl-vae", make_vae)]:
            if not (root / name).exists():
                t0 = time.perf_counter()
                make(root if make is make_pixart else root / name)
                print(f"wrote {root / name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 0
    codes = [("before", args.before)] if args.before else []
    codes.append(("after", str(ROOT)))
    rows = []
    for case in cases(root):
        if args.only and args.only not in case["model"]:
            continue
        for label, code in codes:
            r = run_child(__file__, {**case, "code": code}, env_extra=LIVE_MEMORY_ENV)
            rows.append({"model": f"{case['model']} ({r['params_m']:.0f} M)", "layout": case["layout"],
                         "dtype": case["dtype"], "code": label, "model (MiB)": f"{r['model_mib']:.0f}",
                         "peak Δ (MiB)": f"{r['peak_mib']:.0f}", "peak / model": f"{r['peak_mib'] / r['model_mib']:.2f}",
                         "after Δ (MiB)": f"{r['after_mib']:.0f}",
                         "RSS anon / file after (MiB)": f"{r['after_anon_mib']:.0f} / {r['after_file_mib']:.0f}",
                         "load (s)": f"{r['seconds']:.1f}"})
            print(f"done: {case['model']} {case['layout']} -> {case['dtype']} ({label})", file=sys.stderr)
    print(f"Loading full-size random checkpoints, peak RSS increase during the load call; {machine()}")
    if args.before:
        print(f"before = the loaders of {args.before}, after = this tree's")
    print()
    print(markdown_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    case = child_case()
    if case is not None:
        child(case)
    else:
        sys.exit(main())
