"""LoRA fine-tune of the built-in digits DiT on CPU: teach it thick strokes, measure the change.

    python scripts/lora_digits.py                       # the recorded run -> benchmarks/results/lora_digits.txt
    python scripts/lora_digits.py --steps 20 --samples 2 --out /tmp/x.txt --png ""    # a quick look

The data: scikit-learn's digits as the toy model saw them (16x16 in [-1, 1]), each dilated by a 3x3
grey-level max filter (every stroke about two 16-px pixels wider): the same digits in a new style.
The model: the shipped toy DiT (`minidit/assets/toy_digits.safetensors`), frozen, with rank-8 LoRA
adapters on every block's attention (qkv, proj) and MLP (fc1, fc2) (`minidit.lora.add_lora`), trained
with the toy's own DDPM step (`minidit.train.ddpm_training_loss`, the IDDPM hybrid loss, label
dropout 0.1) and AdamW; nothing else trains.

Measured before and after, on the same seeds and labels (50 DDPM steps, guidance 2):
  * ink: the mean pixel value of the samples in [0, 1] (black 0, white ink 1), against the real and
    the dilated data's; stroke width = ink area / skeleton length is not used: at 16 px the ink mean
    is the robust measure of "thicker";
  * class accuracy: the RBF-SVM of tests/test_toy.py (trained on the real 8x8 digits) on the samples,
    against its accuracy on the dilated data itself (the style costs the classifier some accuracy);
  * the merged model (adapters folded into the weights) against the adapted one: the same samples;
  * the adapter file's size against the model file's.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from minidit.diffusion import get_beta_schedule, make_schedule
from minidit.lora import add_lora, merge_lora, save_lora, unmerge_lora
from minidit.pipelines.toy import (BETA_SCHEDULE, NUM_TIMESTEPS, WEIGHTS, images_to_digits, load_digits_dataset,
                                   load_toy_model, sample_digits, save_grid)
from minidit.train import ddpm_training_loss

TARGET = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])"     # every block's attention and MLP Linears


def thicken(x0: torch.Tensor) -> torch.Tensor:
    """(N, 1, 16, 16) in [-1, 1] -> the same digits with wider strokes (3x3 grey-level dilation)."""
    return F.max_pool2d(x0, kernel_size=3, stride=1, padding=1)


def ink(images: torch.Tensor) -> float:
    """Mean pixel value of (N, 1, H, W) images in [0, 1]: how much of the picture is stroke."""
    return images.float().mean().item()


def classifier():
    """The RBF-SVM of tests/test_toy.py, trained on the real 8x8 digits (scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    digits = load_digits()
    return SVC(gamma=0.001, C=10.0).fit(digits.data, digits.target)


def accuracy(svm, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of (N, 1, 16, 16) images in [0, 1] the SVM reads as their label."""
    return float((svm.predict(images_to_digits(images).numpy()) == labels.numpy()).mean())


def finetune(model, data, *, steps: int, batch_size: int, lr: float, rank: int, alpha: float, seed: int,
             log_every: int = 50) -> list[dict]:
    """Add LoRA adapters to `model` and train them on (x0, y) `data`; the loss log."""
    torch.manual_seed(seed)                                   # A's init
    add_lora(model, TARGET, rank=rank, alpha=alpha)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    schedule = make_schedule(get_beta_schedule(BETA_SCHEDULE, NUM_TIMESTEPS))
    g = torch.Generator().manual_seed(seed)
    x_data, y_data = data
    model.train()
    log, recent = [], []
    for step in range(steps):
        idx = torch.randint(0, len(x_data), (batch_size,), generator=g)
        loss = ddpm_training_loss(model, schedule, x_data[idx], y_data[idx], p_uncond=0.1, generator=g)["loss"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        recent.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.append({"step": step + 1, "loss": sum(recent) / len(recent)})
            recent = []
    return log


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    x_data, y_data = load_digits_dataset()                    # (1797, 1, 16, 16) in [-1, 1]
    thick = thicken(x_data)
    svm = classifier()
    labels = torch.arange(10).repeat(args.samples)            # samples per class x 10
    model = load_toy_model()
    n_model = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    before = sample_digits(labels, seed=args.seed, model=model)
    t_sample = time.perf_counter() - t0

    t0 = time.perf_counter()
    log = finetune(model, (thick, y_data), steps=args.steps, batch_size=args.batch_size, lr=args.lr, rank=args.rank,
                   alpha=args.alpha, seed=args.seed)
    t_train = time.perf_counter() - t0
    load = os.getloadavg()[0]                                 # other jobs on the machine slow the timings
    model.eval()
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    after = sample_digits(labels, seed=args.seed, model=model)
    merge_lora(model)
    merged = sample_digits(labels, seed=args.seed, model=model)
    x_probe = thick[:16]
    t_probe, y_probe = torch.full((16,), 500), y_data[:16]
    with torch.no_grad():
        out_merged = model(x_probe, t_probe, y_probe)
        unmerge_lora(model)
        out_adapted = model(x_probe, t_probe, y_probe)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "toy_digits_thick_lora.safetensors"
        save_lora(model, path)
        lora_bytes = path.stat().st_size
    if args.png:
        grid = torch.cat([before.reshape(args.samples, 10, 1, 16, 16)[:4], after.reshape(args.samples, 10, 1, 16, 16)[:4]])
        save_grid(grid.reshape(-1, 1, 16, 16), args.png, ncols=10)
    data01 = (x_data + 1) / 2
    thick01 = (thick + 1) / 2
    return {
        "ink_real": ink(data01), "ink_thick": ink(thick01), "ink_before": ink(before), "ink_after": ink(after),
        "acc_real": accuracy(svm, data01, y_data), "acc_thick": accuracy(svm, thick01, y_data),
        "acc_before": accuracy(svm, before, labels), "acc_after": accuracy(svm, after, labels),
        "merged_image_diff": (merged - after).abs().max().item(),
        "merged_output_diff": (out_merged - out_adapted).abs().max().item(),
        "output_scale": out_adapted.abs().max().item(),
        "lora_bytes": lora_bytes, "model_bytes": WEIGHTS.stat().st_size, "n_lora": n_lora, "n_model": n_model,
        "loss_log": log, "train_seconds": t_train, "sample_seconds": t_sample, "n_samples": len(labels),
        "load_average": load,
    }


def report(r: dict, args) -> str:
    cpu = subprocess.run(["bash", "-c", "lscpu | grep 'Model name' | sed 's/.*: *//'"], capture_output=True,
                         text=True).stdout.strip() or platform.processor()
    losses = ", ".join(f"{d['step']}: {d['loss']:.4f}" for d in r["loss_log"])
    return "\n".join([
        f"LoRA fine-tune of the toy digits DiT on thick (3x3-dilated) digits: scripts/lora_digits.py "
        f"--steps {args.steps} --batch-size {args.batch_size} --lr {args.lr:g} --rank {args.rank} --alpha {args.alpha:g} "
        f"--seed {args.seed} --samples {args.samples}",
        f"machine: {cpu}, {os.cpu_count()} cores, {args.threads} threads, torch {torch.__version__}; load average "
        f"(1 min) after the training: {r['load_average']:.1f} (above {os.cpu_count()}: other jobs shared the cores)",
        f"adapters: rank {args.rank} on {TARGET}: {r['n_lora']:,} trained parameters of {r['n_model']:,} "
        f"({100 * r['n_lora'] / r['n_model']:.1f} %)",
        f"training: {args.steps} steps in {r['train_seconds']:.1f} s; loss (mean per {r['loss_log'][0]['step']} steps) "
        f"{losses}",
        f"samples: {r['n_samples']} ({args.samples} per class), 50 DDPM steps, guidance 2, same seed before and after; "
        f"{r['sample_seconds']:.1f} s per {r['n_samples']}",
        "",
        "                                     mean ink (0..1)   SVM accuracy",
        f"real digits (the SVM's training set) {r['ink_real']:.4f}            {r['acc_real']:.1%}",
        f"thick digits (the fine-tune data)    {r['ink_thick']:.4f}            {r['acc_thick']:.1%}",
        f"samples before (shipped model)       {r['ink_before']:.4f}            {r['acc_before']:.1%}",
        f"samples after (with the LoRA)        {r['ink_after']:.4f}            {r['acc_after']:.1%}",
        "",
        f"merged vs adapted: max |diff| of the samples {r['merged_image_diff']:.2e} (pixels in [0, 1]); "
        f"of the model output {r['merged_output_diff']:.2e} (output scale {r['output_scale']:.2f})",
        f"adapter file {r['lora_bytes'] / 1024:.0f} KiB vs the model file {r['model_bytes'] / 1024:.0f} KiB "
        f"({r['model_bytes'] / r['lora_bytes']:.0f}x smaller)",
    ]) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=20, help="samples per class, before and after")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lora_digits.txt"))
    p.add_argument("--png", default=str(ROOT / "docs" / "lora_digits.png"),
                   help="before (4 rows) / after (4 rows) grid; '' for none")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    text = report(result, args)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return result


if __name__ == "__main__":
    main()
