"""The memory planner (`minidit/plan.py`) against measurement: predicted vs measured peak per stage, CPU.

    python benchmarks/plan_validation.py                  # every case (~45 minutes on 2 shared cores)
    python benchmarks/plan_validation.py --quick          # four small cases
    python benchmarks/plan_validation.py --only Hunyuan   # the cases whose label contains the text
    python benchmarks/plan_validation.py --gpu-only       # only the planner vs the H200 measurements

What is compared. A GPU's memory holds only tensors (and the weights), so the planner predicts the
*increment* of a stage: the largest set of activations alive at once over the weights and inputs
already in memory. Here every case runs in a fresh process (`run_child` of `benchmarks/common.py`) with
glibc's mmap threshold fixed (`LIVE_MEMORY_ENV`: freed tensors go back to the system, so the
resident set follows the live tensors, as `torch.cuda.max_memory_allocated` does); the module is
built with random weights of the stated size, its weights paged in, its inputs made, a warm-up forward
run at the same size (one-time kernel setup and caches such as the position table, as in a sampling
loop's later steps; the prediction leaves that table out), then `minidit.pipelines.memory.stage`
resets the peak RSS (VmHWM) to the current RSS and the measured forward runs: measured = VmHWM - RSS
at the start of the stage.
The process baseline (interpreter, torch, weights, inputs) is not part of it.

Cases: the PixArt-Σ XL/2 transformer at full size (28 blocks x 1152, 0.61 B parameters, fp32 2.4 GB),
batch 2 (CFG), 300 caption tokens, at 256², 512² and 1024²; the same width with 4 blocks and the manual
attention path (materialised scores); SD3-medium's MM-DiT at full width with 2 layers and Hunyuan-DiT
at full width with 8 blocks (their peaks are one layer's, plus Hunyuan's long skips, which the formula
counts for the depth built); T5-XXL at full width (4096, d_ff 10240, 64 heads) with 2 of its 24 blocks,
batch 1, 120 and 300 tokens; the SDXL VAE decoder at full size (83.7 M parameters), untiled at 256²
and 512², tiled (256-px tiles, 64-px overlap) at 384² and 512². Everything in float32.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import LIVE_MEMORY_ENV, child_case, machine, markdown_table, peak_memory, report, run_child, touch  # noqa: E402

MiB = 2**20


def build(case):
    """(module, measured call, warm-up call) of a case, random weights."""
    import torch
    from dataclasses import replace
    g = torch.Generator().manual_seed(0)
    kind = case["kind"]
    if kind in ("pixart", "sd3", "hunyuan"):
        from minidit.plan_models import MODEL_CONFIGS
        cfg = replace(MODEL_CONFIGS[kind], **case.get("override", {}))
    if kind == "pixart":
        from minidit.pixart import PixArt
        m = PixArt(cfg)
        def call(side):
            a = (torch.randn(2, 4, side, side, generator=g), torch.tensor([500., 500.]),
                 torch.randn(2, 300, 4096, generator=g), torch.ones(2, 300))
            return lambda: m(*a)
    elif kind == "sd3":
        from minidit.mmdit import MMDiT
        m = MMDiT(cfg)
        def call(side):
            a = (torch.randn(2, 16, side, side, generator=g), torch.tensor([500., 500.]),
                 torch.randn(2, 2048, generator=g), torch.randn(2, 154, 4096, generator=g))
            return lambda: m(*a)
    elif kind == "hunyuan":
        from minidit.hunyuan import HunyuanDiT
        m = HunyuanDiT(cfg)
        def call(side):
            a = (torch.randn(2, 4, side, side, generator=g), torch.tensor([500., 500.]), torch.randn(2, 77, 1024),
                 torch.ones(2, 77), torch.randn(2, 256, 2048), torch.ones(2, 256))
            return lambda: m(*a)
    elif kind == "t5":
        from minidit.text.t5 import T5_V1_1_XXL, T5EncoderModel
        m = T5EncoderModel(replace(T5_V1_1_XXL, num_layers=case["layers"]))
        def call(L):
            a = (torch.randint(0, 32128, (1, L), generator=g), torch.ones(1, L, dtype=torch.long))
            return lambda: m(*a).last_hidden_state
    elif kind == "vae":
        from minidit.vae import SDXL_VAE, AutoencoderKL
        m = AutoencoderKL(SDXL_VAE)
        def call(side):
            z = torch.randn(1, 4, side, side, generator=g)
            return lambda: m.decode(z, tile=case["tile"], overlap=case["overlap"]) if case.get("tile") else m.decode(z)
    return m.eval(), call


def child(case):
    import torch
    from minidit.attention import attention_backend
    torch.set_num_threads(case["threads"])
    with torch.no_grad():
        m, call = build(case)
        touch(m)
        with attention_backend(case.get("backend", "sdpa")):
            run = call(case["size"])               # the inputs, before the measured stage
            out = run()                            # warm-up at the same size: one-time kernel setup and the
            del out                                # position table's cache, as in a sampling loop's later steps
            t0 = time.perf_counter()
            with peak_memory() as memory:
                run()
            seconds = time.perf_counter() - t0
    report({"measured_mib": memory["peak_mib"], "rss_mib": memory["peak_rss_mib"], "seconds": round(seconds, 1)})


def predicted_mib(case) -> float:
    """The planner's activation peak for the case (`minidit.plan`), MiB."""
    from dataclasses import replace
    from minidit import plan as P
    from minidit.plan_models import MODEL_CONFIGS
    kind, b = case["kind"], 4
    if kind == "pixart":
        cfg = replace(MODEL_CONFIGS[kind], **case.get("override", {}))
        N = (case["size"] // 2) ** 2
        terms = P.pixart_activations(cfg, N, 2, 300, b, case.get("backend", "sdpa"))
        return (terms["peak"] - terms["position table N·D"]) / MiB     # cached by the warm-up
    if kind == "sd3":
        cfg = replace(MODEL_CONFIGS[kind], **case.get("override", {}))
        terms = P.mmdit_activations(cfg, (case["size"] // 2) ** 2, 2, 154, b)
        return (terms["peak"] - terms["position table N·D"]) / MiB
    if kind == "hunyuan":
        cfg = replace(MODEL_CONFIGS[kind], **case.get("override", {}))
        return P.hunyuan_activations(cfg, (case["size"] // 2) ** 2, 2, 333, b)["peak"] / MiB
    if kind == "t5":
        from minidit.text.t5 import T5_V1_1_XXL
        return P.t5_activations(T5_V1_1_XXL, case["size"], 1, b)["peak"] / MiB
    from minidit.vae import SDXL_VAE
    s = case["size"]
    return P.vae_decode_memory(SDXL_VAE, s, s, b, case.get("tile"), case.get("overlap", 0), cpu=True)["peak"] / MiB


def cases(quick: bool) -> list[dict]:
    px = [dict(label=f"PixArt-Σ XL/2, 28 blocks, {s * 8}²", kind="pixart", size=s) for s in (32, 64, 128)]
    px.append(dict(label="PixArt-Σ width 1152, 4 blocks, manual attention, 512²", kind="pixart", size=64,
                   backend="manual", override={"depth": 4}))
    other = [dict(label="SD3-medium MM-DiT width 1536, 2 layers, 1024²", kind="sd3", size=128,
                  override={"depth": 2}),
             dict(label="Hunyuan-DiT width 1408, 8 blocks, 1024²", kind="hunyuan", size=128,
                  override={"depth": 8})]
    t5 = [dict(label=f"T5-XXL width 4096, 2 blocks, {L} tokens", kind="t5", size=L, layers=2) for L in (120, 300)]
    vae = [dict(label=f"SDXL VAE decode untiled, {s * 8}²", kind="vae", size=s) for s in (32, 64)]
    vae += [dict(label=f"SDXL VAE decode tiled 256 px / 64, {s * 8}²", kind="vae", size=s, tile=32, overlap=8)
            for s in (48, 64)]
    if quick == "2":
        return [px[0], vae[0]]
    if quick:
        return [px[0], px[3], t5[0], vae[0]]
    return px + other + t5 + vae


# Measured on an NVIDIA H200 (benchmarks/results/pixart_gpu_sdpa.txt, pixart_gpu_manual.txt; README "PixArt-Σ on
# a GPU"): torch.cuda.max_memory_allocated per stage, resident weights included; transformer fp16, T5 bf16, VAE fp32,
# T5 staged. (model, side, backend, tiled decode) -> {stage: GiB}
H200 = {("pixart-sigma-1024", 1024, "sdpa", False): {"text": 10.46, "denoise": 1.70, "decode": 5.77},
        ("pixart-sigma-2k", 2048, "sdpa", True): {"text": 10.50, "denoise": 2.32, "decode": 2.67},
        ("pixart-sigma-1024", 1024, "manual", False): {"text": 10.45, "denoise": 5.60, "decode": 5.77}}


def gpu_rows() -> list[dict]:
    """The planner's card peaks (`plan_fit.evaluate`, as the pipeline ran: T5 staged) against the H200's."""
    from minidit import plan as P
    from minidit.cli import MODELS
    from minidit.plan_fit import Setting, evaluate
    from minidit.plan_models import stack
    rows = []
    for (model, side, backend, tiled), measured in H200.items():
        s = stack(MODELS[model])
        o = evaluate(s, side // 8, side // 8, Setting("fp16", "staged", 64 if tiled else None, None), steps=20,
                     guided=True, backend=backend, kv_scale=1, gpu="h200")
        for name, gib in measured.items():
            note = "calibrates CUDA_CONV_WORKSPACE" if (name, tiled) == ("decode", False) else ""
            rows.append({"case": f"{model} {side}² {backend}{', tiled' if tiled and name == 'decode' else ''}",
                         "stage": name, "predicted GiB": f"{P.gib(o.peaks[name]):.2f}", "measured GiB": f"{gib:.2f}",
                         "predicted / measured": f"{P.gib(o.peaks[name]) / gib:.2f}", "note": note})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", nargs="?", const="1", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gpu-only", action="store_true", help="only the comparison with the H200 measurements")
    p.add_argument("--only", type=str, default=None, help="only the cases whose label contains this text")
    args = p.parse_args()
    gpu = gpu_rows()
    if args.gpu_only:
        print(markdown_table(gpu, list(gpu[0])))
        return
    rows = []
    for case in cases(args.quick):
        if args.only and args.only not in case["label"]:
            continue
        case["threads"] = args.threads
        got = run_child(__file__, case, args.threads, LIVE_MEMORY_ENV)
        pred = predicted_mib(case)
        rows.append({"case": case["label"], "predicted MiB": f"{pred:.1f}", "measured MiB": f"{got['measured_mib']:.1f}",
                     "predicted / measured": f"{pred / got['measured_mib']:.2f}", "process peak RSS MiB": f"{got['rss_mib']:.0f}",
                     "seconds": got["seconds"]})
        print(f"done: {case['label']}: {rows[-1]['predicted / measured']}", file=sys.stderr, flush=True)
    import torch
    torch.set_num_threads(args.threads)
    print(f"\nMemory planner: predicted vs measured activation peak (VmHWM increment over the stage's start, "
          f"fixed mmap threshold), float32, {machine()}\n")
    print(markdown_table(rows, list(rows[0])))
    print("\nOn a GPU: the planner's peak per stage (resident weights included) vs torch.cuda.max_memory_allocated "
          "measured on an NVIDIA H200 (benchmarks/results/pixart_gpu_*.txt)\n")
    print(markdown_table(gpu, list(gpu[0])))


if __name__ == "__main__":
    case = child_case()
    child(case) if case else main()
