"""Data-parallel training with `torch.distributed`, launched by `torchrun` (no launcher of our own).

Papers: PyTorch DDP (Li et al., arXiv:2006.15704), FSDP (Zhao et al., arXiv:2304.11277).

    torchrun --nproc_per_node 4 scripts/train.py ...      one process per GPU (or CPU worker)

torchrun starts the processes and gives each RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
environment; `setup()` reads them and joins the process group: NCCL on GPUs, gloo on the CPU. Without
them (a plain `python scripts/train.py`) it is one process and nothing is initialised.

    ddp    DistributedDataParallel: every process holds the whole model; after each backward the
           gradients are averaged over the processes (all-reduce), so every copy takes the same step.
           Each process sees batch_size images of the global batch (`buckets.BucketBatchSampler`).
    fsdp   fully_shard (FSDP2) on every block and the root: parameters, gradients and AdamW moments
           are sharded, 1 / world_size of each per process; a block's weights are gathered for its
           forward and backward. Checkpoints gather the full tensors (`full_state`).

The loss averaged over the processes (`mean_over_processes`) is what rank 0 logs: with the per-sample
draws of `objectives.py` it equals the loss of one process with the whole global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from .checkpointing import transformer_blocks

MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> World:
    """Join torchrun's process group (if launched by it); pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, world_size, local_rank, dev)


def teardown(world: World) -> None:
    """Leave the process group together: a barrier first, so that no process closes its gloo connections while
    a peer still finishes a collective (that race aborted a process at exit: "terminate called without an
    active exception")."""
    if world.distributed and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def wrap(model, world: World, mode: str = "ddp"):
    """The module the loop calls: the model itself (one process), DDP or FSDP2 around it."""
    if mode not in MODES:
        raise ValueError(f"unknown distributed mode {mode!r}: one of {', '.join(MODES)}")
    if not world.distributed:
        return model
    if mode == "ddp":
        ids = [world.device.index] if world.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    for block in transformer_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def mean_over_processes(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a tensor over all processes (the value itself with one process)."""
    if not world.distributed:
        return value
    value = value.detach().clone().to(world.device)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.world_size


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain CPU tensor from a plain or FSDP-sharded (DTensor) one (a collective for DTensors: every rank calls it)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().cpu()


def full_state(state: dict) -> dict:
    return {k: full_tensor(v) for k, v in state.items()}


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
