"""Peak memory of a whole PixArt-Σ run on the CPU: minidit's staged pipeline vs diffusers' default
`PixArtSigmaPipeline`, same folder, same call, same image.

    python benchmarks/pipeline_memory.py --make     # write the random pipeline folder (once, ~7 GB)
    python benchmarks/pipeline_memory.py            # measure both (about 15 min on 2 cores at 1024²)
    python benchmarks/pipeline_memory.py --clean    # delete the folder

The folder (random weights, written by diffusers' and transformers' `save_pretrained`, float32, under
--dir, default /tmp/minidit-bench/pixart-sigma-pipeline): the full-size PixArt-Σ-XL-2-1024-MS
transformer (611 M parameters; every weight drawn from N(0, 0.02²), the adaLN tables from
N(0, 0.3²), so that no part is left at its zero initialisation), the full-size SDXL VAE (83.7 M,
diffusers' initialisation) and a T5 v1.1 encoder of T5-XXL's full width (d_model 4096, 64 heads,
d_ff 10240, the 32128-token embedding) with --t5-layers blocks instead of 24 (default 4: 904 M
parameters, 3.6 GB in float32, against 4.76 B / 19 GB for the real one), its tokenizer a small
sentencepiece model trained here (T5's id layout), `DPMSolverMultistepScheduler()`.

The call, for both: one prompt, seed 0 (a CPU `torch.Generator`), --steps DPM-Solver++ steps (default
2), guidance 4.5, --size² pixels (default 1024: the model's own resolution, so resolution binning keeps
it), `clean_caption=False` for diffusers (minidit does not clean captions), output as float32 arrays.

What is measured. Each implementation runs in its own Python process: import, `from_pretrained`, the
call. "peak RSS" is the process's resident-set high-water mark (VmHWM, /proc/self/status) over the
whole run: everything, torch's libraries and the import included (minidit's per-stage probe resets
VmHWM when each stage starts, so for minidit it is the largest of the peak before the call and the
three stages' peaks); "after import" is the RSS before
`from_pretrained`, for reference. diffusers' default keeps every component in memory for the whole
run, in float32 on the CPU (no offload: `enable_model_cpu_offload` needs an accelerator). minidit's
`PixArtPipeline.from_pretrained(folder, keep_transformer=False)` (T5 freed after encoding, the
default) reads only the transformer's config.json up front, loads the transformer once T5 is freed,
frees it before the VAE decodes (`minidit/pipelines/pixart.py`); its VAE decodes whole up to 2 MPixels
and in tiles above, and its per-stage peaks (`last_run_stats`) are printed. Both images are compared
in 1/255 units.
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
from benchmarks.common import child_case, machine, report, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "A small cactus with a happy face in the Sahara desert."
MiB = 2**20


def status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def transformer_scale(name: str) -> float:
    return 0.3 if "scale_shift_table" in name else 0.02


def make(folder: Path, t5_layers: int) -> None:
    """Write the pipeline folder, one big component at a time (model_index.json from a pipeline of
    the small parts, so that it is diffusers' own)."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.text import train_spiece
    from helpers.weights import randomize
    spm = folder.parent / "pixart-sigma-spiece"
    if not (spm / "spiece.model").is_file():
        spm.mkdir(parents=True, exist_ok=True)
        train_spiece(spm, 600)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=t5_layers,
                                           num_heads=64, feed_forward_proj="gated-gelu")).eval()
    vae = AutoencoderKL(latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, scaling_factor=0.13025)
    with torch.device("meta"):     # a placeholder while T5 is saved: the real transformer is written after
        placeholder = PixArtTransformer2DModel(num_layers=1)
    pipe = PixArtSigmaPipeline(tokenizer=T5Tokenizer.from_pretrained(spm, extra_ids=0), text_encoder=text_encoder,
                               vae=vae, transformer=placeholder, scheduler=DPMSolverMultistepScheduler())
    for name in ("tokenizer", "text_encoder", "vae", "scheduler"):
        getattr(pipe, name).save_pretrained(folder / name)
    shutil.copy(spm / "spiece.model", folder / "tokenizer" / "spiece.model")
    pipe.save_config(folder)                                      # model_index.json
    del pipe, text_encoder, vae
    transformer = PixArtTransformer2DModel(
        num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
        cross_attention_dim=1152, caption_channels=4096, sample_size=128, patch_size=2, interpolation_scale=2,
        use_additional_conditions=False)
    randomize(transformer, seed=1, scale=transformer_scale).save_pretrained(folder / "transformer")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "PixArtSigmaPipeline" and "transformer" in index, index


def child(case: dict) -> None:
    import numpy as np
    import torch
    torch.set_num_threads(case["threads"])
    start = status_mib("VmRSS")
    t0 = time.perf_counter()
    stages, pre_call_peak, stage_peaks = None, 0.0, []
    generator = torch.Generator().manual_seed(0)
    call = dict(num_inference_steps=case["steps"], guidance_scale=4.5, height=case["size"], width=case["size"],
                generator=generator, output_type="np")
    if case["impl"] == "diffusers":
        from diffusers import PixArtSigmaPipeline
        start = status_mib("VmRSS")
        pipe = PixArtSigmaPipeline.from_pretrained(case["folder"])
        pipe.set_progress_bar_config(disable=True)
        image = pipe(PROMPT, clean_caption=False, **call).images
    else:
        from minidit.pipelines.memory import format_stats
        from minidit.pipelines.pixart import PixArtPipeline
        start = status_mib("VmRSS")
        pipe = PixArtPipeline.from_pretrained(case["folder"], keep_transformer=False)
        pre_call_peak = status_mib("VmHWM")      # import + loading; the stages reset VmHWM (memory.stage)
        tiling = {"decode_tiling": True} if case["impl"] == "minidit-tiled" else {}    # 512-px tiles, 128 overlap
        image = pipe(PROMPT, progress=False, **call, **tiling)
        stages = format_stats(pipe.last_run_stats)
        stage_peaks = [r["peak_gib"] * 1024 for name, r in pipe.last_run_stats.items()
                       if isinstance(r, dict) and r.get("peak_gib") is not None]
    seconds = time.perf_counter() - t0
    np.save(case["save"], np.asarray(image, dtype=np.float32))
    # minidit's stage probe resets VmHWM when each stage starts: the run's peak is the largest of the
    # peak before the call and every stage's peak (diffusers never resets it: its VmHWM is the run's)
    report({"peak_rss_mib": max(status_mib("VmHWM"), pre_call_peak, *stage_peaks), "after_import_mib": start, "seconds": seconds, "stages": stages,
            "shape": list(np.asarray(image).shape)})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path("/tmp/minidit-bench/pixart-sigma-pipeline"))
    p.add_argument("--make", action="store_true")
    p.add_argument("--clean", action="store_true")
    p.add_argument("--t5-layers", type=int, default=4)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--impls", nargs="+", default=["minidit", "diffusers"],
                   help="minidit, diffusers, minidit-tiled (minidit with decode_tiling=True)")
    p.add_argument("--reuse", nargs="*", default=[], help="implementations whose last saved result to print "
                   "instead of running them again (same folder and call; a run saves <dir>/../pipeline_memory_<impl>.json)")
    args = p.parse_args(argv)
    if args.clean:
        shutil.rmtree(args.dir, ignore_errors=True)
        return 0
    if args.make:
        if args.dir.exists():
            print(f"{args.dir} exists: --clean first", file=sys.stderr)
            return 1
        make(args.dir, args.t5_layers)
        return 0
    def run_peak(r: dict) -> float:
        """Results saved before the child took the stage peaks into account: the largest "peak GiB" of
        its printed stages (the same numbers), or its final VmHWM."""
        peaks = [float(line.split()[3]) * 1024 for line in (r.get("stages") or "").splitlines()[1:]
                 if len(line.split()) >= 4 and line.split()[0] in ("text", "denoise", "decode")]
        return max([r["peak_rss_mib"], *peaks])
    layers = json.loads((args.dir / "text_encoder" / "config.json").read_text())["num_layers"]
    results = {}
    for impl in args.impls:
        saved = args.dir.parent / f"pipeline_memory_{impl}.json"
        if impl in args.reuse:
            results[impl] = json.loads(saved.read_text())
            print(f"reused: {impl} (measured {results[impl]['measured']})", file=sys.stderr)
            continue
        save = str(args.dir.parent / f"pipeline_memory_{impl}.npy")
        results[impl] = run_child(__file__, dict(impl=impl, folder=str(args.dir), size=args.size, steps=args.steps,
                                                 threads=args.threads, save=save), threads=args.threads)
        results[impl].update(save=save, measured=time.strftime("%Y-%m-%d %H:%M"), size=args.size, steps=args.steps)
        saved.write_text(json.dumps(results[impl]))
        print(f"done: {impl}", file=sys.stderr)
    print(f"PixArt-Σ pipeline on the CPU, float32, {args.size}², {args.steps} DPM-Solver++ steps, guidance 4.5, seed 0; "
          f"full-size transformer and SDXL VAE, T5 of full width with {layers} of 24 blocks; {machine()}")
    print()
    print("| implementation | peak RSS (MiB) | after import (MiB) | time (s) | peak vs diffusers |")
    print("|---|---|---|---|---|")
    ref = results.get("diffusers")
    for impl, r in results.items():
        ratio = f"{run_peak(r) / run_peak(ref):.2f}" if ref and impl != "diffusers" else ""
        print(f"| {impl} | {run_peak(r):.0f} | {r['after_import_mib']:.0f} | {r['seconds']:.0f} | {ratio} |")
    for impl in results:
        if impl == "diffusers" or not ref:
            continue
        import numpy as np
        a, b = np.load(results[impl]["save"]), np.load(ref["save"])
        print(f"\n{impl}: images {a.shape} (mean {a.mean():.3f}, std {a.std():.3f} in [0, 1]): max |{impl} - diffusers| = "
              f"{np.abs(a - b).max() * 255:.2g}/255, mean {np.abs(a - b).mean() * 255:.2g}/255")
    for impl in results:
        if impl != "diffusers":
            print(f"\n{impl}'s stages (GiB, peak RSS of the process during each stage):\n" + results[impl]["stages"])
    return 0


if __name__ == "__main__":
    case = child_case()
    if case is not None:
        child(case)
    else:
        sys.exit(main())
