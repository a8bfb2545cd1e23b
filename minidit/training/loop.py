"""The training loop, top to bottom: one function, `train`.

    for each optimizer step s:
        bucket, micro-batches = sampler.step(s)             one bucket; this process's share (buckets.py)
        for each micro-batch m (gradient accumulation):
            x0, cond = data.load(items)                      images or latents; labels or cached T5 states
            draws    = per-sample t / sigma, eps, dropout    keyed by (seed, s, position): split-invariant
            loss     = objective(model_fn, x0, draws) / k    under bf16 autocast if asked (checkpointing.py)
            loss.backward()                                  DDP averages gradients at the last micro-batch
        clip the gradient norm; AdamW step; LR schedule step; EMA update (optim.py)
        log the loss averaged over the processes; save a resumable checkpoint every `save_every` steps
    export the EMA weights in the official layout (state.py), or, for LoRA, the adapters only

Dividing each micro-batch's mean loss by k and summing the k gradients gives the gradient of the
mean over all k x batch_size samples: accumulation = one k times larger batch (same draws, tested).

Model, data and objective are built by the caller (`scripts/train.py`), so the same loop trains a
DiT on digits, a PixArt on captioned images, with eps, v or flow matching.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.nn.parallel import DistributedDataParallel

from minidit.lora import lora_layers, save_lora

from . import distributed as D
from .buckets import BucketBatchSampler
from .checkpointing import autocast, enable_checkpointing
from .objectives import draw_batch
from .optim import EMA, make_optimizer
from .state import export_diffusers, export_weights, read_checkpoint, save_checkpoint, set_rng_state

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)     # whole tensors, on the CPU (rank 0 with FSDP)


@dataclass
class TrainConfig:
    steps: int = 1000                 # optimizer steps
    batch_size: int = 16              # images per micro-batch per process
    grad_accum: int = 1               # micro-batches per optimizer step
    lr: float = 1e-4                  # peak learning rate
    lr_by_prefix: dict = field(default_factory=dict)   # e.g. {"y_embedder.": 1e-4}: other rates by name
    weight_decay: float = 0.0         # AdamW (DiT: 0; PixArt: 0.03)
    warmup: int = 0                   # linear warm-up steps, then cosine to min_lr_ratio x lr
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0     # max gradient norm (None: no clipping)
    ema_decay: float = 0.9999
    ema_warmup: bool = False          # d = min(decay, (1 + n) / (10 + n))
    p_uncond: float = 0.1             # label / caption dropout for classifier-free guidance
    objective: str = "epsilon"        # recorded: "epsilon" | "v_prediction" | "flow"
    checkpointing: bool = False       # gradient checkpointing per transformer block
    precision: str = "fp32"           # "fp32" | "bf16" (autocast)
    distributed: str = "ddp"          # "ddp" | "fsdp" (under torchrun)
    seed: int = 0
    log_every: int = 10
    save_every: int = 0               # 0: a checkpoint at the end only
    out: str = "runs/train"
    resume: str | None = None         # a checkpoint to continue from
    export: bool = True               # write the EMA weights in the official layout at the end
    export_diffusers: bool = False    # ... and as a diffusers transformer/ folder (out/ema_diffusers/)

    def record(self, world_size: int) -> dict:
        return {**asdict(self), "world_size": world_size,
                "global_batch": self.batch_size * self.grad_accum * world_size}


def train(cfg: TrainConfig, model, data, objective, world: D.World | None = None) -> dict:
    """Train `model` on `data` with `objective` (see the module docstring). Returns {"losses": [per step],
    "checkpoint": path, "export": path or None, "seconds"}."""
    world = world or D.World()
    torch.manual_seed(cfg.seed)
    record = cfg.record(world.world_size)
    out = Path(cfg.out)

    # ---- the model, its EMA, the optimizer --------------------------------------------------------
    core = model.to(world.device).train()
    if cfg.checkpointing:
        enable_checkpointing(core)
    wrapped = D.wrap(core, world, cfg.distributed)               # DDP wrapper, or core sharded in place (FSDP)
    ema = EMA(core, cfg.ema_decay, cfg.ema_warmup)
    opt, sched = make_optimizer(core, cfg.lr, lr_by_prefix=cfg.lr_by_prefix, weight_decay=cfg.weight_decay,
                                warmup=cfg.warmup, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
    sampler = BucketBatchSampler(data.buckets(), cfg.batch_size, grad_accum=cfg.grad_accum,
                                 world_size=world.world_size, rank=world.rank, seed=cfg.seed)
    start = 0
    if cfg.resume:
        blob = read_checkpoint(cfg.resume, record)
        set_model_state_dict(core, blob["model"], options=StateDictOptions(full_state_dict=True))
        set_optimizer_state_dict(core, opt, blob["optimizer"], options=StateDictOptions(full_state_dict=True))
        sched.load_state_dict(blob["scheduler"])
        ema.load_state_dict(blob["ema"])
        set_rng_state(blob["rng"])
        start = blob["step"]

    def checkpoint(step: int) -> Path:
        model_state = get_model_state_dict(core, options=FULL)              # collectives: every rank calls
        optimizer_state = get_optimizer_state_dict(core, opt, options=FULL)
        ema_state = {**ema.state_dict(), "shadow": D.full_state(ema.shadow)}
        path = out / f"checkpoint-{step:07d}.pt"
        if world.main:
            save_checkpoint(path, model_state=model_state, ema_state=ema_state, optimizer_state=optimizer_state,
                            scheduler=sched, step=step, config=record)
        D.barrier(world)
        return path

    # ---- the loop ------------------------------------------------------------------------------------
    losses, log = [], []
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        bucket, micro = sampler.step(step)
        step_terms: dict[str, torch.Tensor] = {}
        for m, (positions, items) in enumerate(micro):
            x0, cond = data.load(items, bucket)
            x0 = x0.to(world.device)
            draws = draw_batch(objective, x0.shape[1:], cfg.seed, step, positions, cfg.p_uncond)
            last = m == len(micro) - 1
            with _gradient_sync(wrapped, last):
                with autocast(cfg.precision, world.device):
                    terms = objective(data.model_fn(wrapped, core, cond, draws["drop"]), x0, draws)
                    loss = terms["loss"].float().mean() / cfg.grad_accum
                loss.backward()
            for k, v in terms.items():
                step_terms[k] = step_terms.get(k, 0.0) + v.detach().float().mean() / cfg.grad_accum
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.grad_clip)
        lr = sched.get_last_lr()[-1]                               # the rate of this step (the last group's)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema.update(core)

        means = {k: D.mean_over_processes(v, world).item() for k, v in step_terms.items()}
        losses.append(means["loss"])
        if world.main and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            entry = {"step": step + 1, **{k: round(v, 6) for k, v in means.items()},
                     "lr": lr, "bucket": list(bucket), "seconds": round(time.perf_counter() - t0, 1)}
            log.append(entry)
            print(json.dumps(entry), flush=True)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            checkpoint(step + 1)

    path = checkpoint(cfg.steps)
    exported = None
    if cfg.export and lora_layers(core):                 # LoRA: the adapters only, from the EMA (minidit.lora)
        ema.copy_to(core)
        if world.main:
            exported = out / "lora.safetensors"
            save_lora(core, exported)
        D.barrier(world)
    elif cfg.export:
        shadow = D.full_state(ema.shadow)
        if world.main:
            exported = export_weights(out / "ema", core, shadow)                # ema.pt (DiT) / ema.pth (PixArt)
            if cfg.export_diffusers:
                export_diffusers(out / "ema_diffusers", core, shadow)
        D.barrier(world)
    if world.main:
        (out / "log.json").write_text(json.dumps({"config": record, "losses": losses, "log": log}, indent=1))
    return {"losses": losses, "checkpoint": path, "export": exported, "seconds": time.perf_counter() - t0}


def _gradient_sync(wrapped, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch (DDP `no_sync`; FSDP2's switch)."""
    if isinstance(wrapped, DistributedDataParallel) and not sync:
        return wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):
        wrapped.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()
