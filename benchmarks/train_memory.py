"""The training-memory formula (`minidit/plan_train.py`) against measurement on the CPU, float32.

    python benchmarks/train_memory.py            # ~3 min on 2 shared cores; the table -> stdout (peft for LoRA)

The PixArt-Σ block at full width (D = 1152, 16 heads, MLP ratio 4, 300 caption tokens) with fewer blocks
than the released 28 (the activations are per block: the formula scales them by the depth), trained as
`minidit.training` trains it (train mode, the caption dropout off). Two measurements per case:

  saved      the bytes of the distinct storages autograd saves in the forward for the backward
             (`torch.autograd.graph.saved_tensors_hooks`), weights, buffers and the inputs (latents,
             T5 states, mask) left out: what the formula `plan_train.saved_activations` predicts
             (with checkpointing: the block inputs and what lies outside the blocks; the one block
             recomputed at a time belongs to the backward)
  step peak  the largest set of tensors alive at once over forward + backward (every tensor an op
             makes, `minidit.pipelines.memory._LiveTensors`), the fp32 gradients included: the
             planner's is max(saved (+ the recomputed block), gradients) + the backward transient

LoRA cases: PEFT's adapters (rank 64) on the planner's target layers, everything else frozen; the last
case the same with minidit's own (`minidit.lora.add_lora`).
The formula was read off the code (`pixart.PixArtBlock`) and fixed once against the first case (the
merge of heads after SDPA is a view, not a copy); the other cases check it without further change.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import replace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from minidit.pipelines.memory import _LiveTensors               # noqa: E402
from minidit.pixart import PIXART_SIGMA_512_MS, PixArt          # noqa: E402
from minidit.lora import add_lora                               # noqa: E402
from minidit.plan_train import LORA_TARGETS, saved_activations  # noqa: E402
from minidit.training import enable_checkpointing, prepare_pixart  # noqa: E402

MiB = 2**20
# (blocks, latent side, batch, checkpointing, LoRA targets or None for a full fine-tune)
CASES = [(2, 64, 1, False, None), (2, 64, 1, True, None), (3, 32, 2, False, None), (3, 32, 2, True, None),
         (2, 128, 1, False, None), (2, 128, 1, True, None),
         (2, 64, 1, False, "attention"), (2, 64, 1, True, "attention"), (3, 32, 2, False, "attention+mlp"),
         (2, 64, 1, False, "minidit attention")]              # the last: minidit.lora's adapters instead of PEFT's
L, RANK = 300, 64
# the planner's LoRA targets (minidit names) as a PEFT regex over the blocks' Linear layers
PEFT_TARGETS = {"attention": r".*blocks\.\d+\.(attn\.(qkv|proj)|cross_attn\.(q_linear|kv_linear|proj))",
                "attention+mlp": r".*blocks\.\d+\.(attn\.(qkv|proj)|cross_attn\.(q_linear|kv_linear|proj)|mlp\.fc[12])"}


def build(depth: int, checkpointing: bool, lora: str | None = None):
    """The model; with `lora`, PEFT's LoRA adapters (rank 64) on the planner's targets, the rest frozen (PEFT is
    the test-only oracle here)."""
    torch.manual_seed(0)
    model = prepare_pixart(PixArt(replace(PIXART_SIGMA_512_MS, depth=depth))).train()
    if lora and lora.startswith("minidit "):
        add_lora(model, LORA_TARGETS[lora.split()[1]], RANK)   # freezes everything but the adapters
    elif lora:
        from peft import LoraConfig, inject_adapter_in_model    # noqa: PLC0415  (only the LoRA cases need it)
        model = inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=PEFT_TARGETS[lora]), model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    return enable_checkpointing(model) if checkpointing else model


def measure(depth: int, side: int, B: int, checkpointing: bool, lora: str | None = None) -> tuple[int, int, int]:
    model = build(depth, checkpointing, lora)
    x, t = torch.randn(B, 4, side, side), torch.full((B,), 500)
    y, mask = torch.randn(B, L, 4096), torch.ones(B, L)
    skip = {s.untyped_storage().data_ptr() for s in [*model.parameters(), *model.buffers(), x, y, mask, t]}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x, t, y, mask)
    del out
    model.zero_grad(set_to_none=True)
    live = _LiveTensors([*model.parameters(), *model.buffers(), x, y, mask, t])
    with live:
        loss = model(x, t, y, mask).square().mean()
        loss.backward()
        del loss
    grads = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None)
    return sum(saved.values()), live.peak, grads


def main() -> None:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"Training memory: formula (minidit/plan_train.py) vs measured, PixArt-Σ width 1152, float32, {L} caption "
          f"tokens, CPU {name}, torch {torch.__version__}, Python {platform.python_version()}\n")
    print("| case | predicted saved MiB | measured saved MiB | predicted / measured | predicted step peak MiB "
          "| measured step peak MiB | predicted / measured |")
    print("|---|---|---|---|---|---|---|")
    for depth, side, B, ckpt, lora in CASES:
        torch.set_num_threads(int(os.environ.get("THREADS", "2")))
        cfg = replace(PIXART_SIGMA_512_MS, depth=depth)
        N = (side // 2) ** 2
        targets = (lora or "attention").split()[-1]
        terms = saved_activations(cfg, N, B, L, 4, ckpt, lora=lora is not None, targets=targets, rank=RANK)
        recomputed = terms.pop("one block recomputed", 0)
        predicted = sum(terms.values())
        saved, peak, grads = measure(depth, side, B, ckpt, lora)
        bound = max(predicted + recomputed, grads) + int(2 * cfg.mlp_ratio * B * N * cfg.hidden_size * 4)
        label = (f"{'LoRA r=64 ' + lora if lora else 'full'}, {depth} blocks, {side * 8}², batch {B}"
                 f"{', checkpointing' if ckpt else ''}")
        print(f"| {label} | {predicted / MiB:.1f} | {saved / MiB:.1f} | {predicted / saved:.3f} | {bound / MiB:.1f} "
              f"| {peak / MiB:.1f} | {bound / peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
