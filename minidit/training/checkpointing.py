"""Two ways to trade compute for memory in training: gradient checkpointing per block, and bf16 autocast.

Gradient checkpointing (Chen et al., arXiv:1604.06174). Backpropagation needs the tensors each op
saved in the forward; for a PixArt block that is (15 + 2r) B·N·D values + 2 B·L·D (r the MLP ratio;
`minidit/plan_train.py`, measured to 0.5 %), times the depth. With `torch.utils.checkpoint` on a block, the forward
keeps only the block's inputs and runs the block again during the backward to get the rest: the
activations drop to one B·N·D per block plus one block's full set, for about one more forward's FLOPs
(~1.33 x the step's compute). The gradients are the same: the recomputation is the same ops on the
same inputs (a test checks it).

`enable_checkpointing(model)` wraps the `forward` of every block in `model.blocks` (DiT, PixArt,
Hunyuan-DiT; `joint_blocks` for SD3's MM-DiT) on the instance, so the module tree and the state-dict
keys stay those of the checkpoint. Non-reentrant (`use_reentrant=False`): works with DDP and with
inputs that do not require grad.

Mixed precision: `autocast(precision, device)` is `torch.autocast(..., dtype=torch.bfloat16)` for
"bf16" (matmuls and convolutions in bf16, reductions and the weights' master copy in fp32), a no-op
for "fp32". bf16 needs no loss scaling (its range is fp32's); fp16 would, and the DiT family is
trained in bf16/fp32, so it is not offered.
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint

PRECISIONS = ("fp32", "bf16")
BLOCK_LISTS = ("blocks", "joint_blocks")


def transformer_blocks(model) -> list:
    """The model's list of transformer blocks (`blocks`, or SD3's `joint_blocks`)."""
    for name in BLOCK_LISTS:
        blocks = getattr(model, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return list(blocks)
    raise ValueError(f"{type(model).__name__} has no `blocks` / `joint_blocks` ModuleList to checkpoint")


def _checkpointed(forward):
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():                 # evaluation: nothing to save, nothing to recompute
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    run.checkpointed = True
    return run


def enable_checkpointing(model, enabled: bool = True):
    """Checkpoint every transformer block (or undo it with enabled=False). Returns the model."""
    for block in transformer_blocks(model):
        wrapped = getattr(block.forward, "checkpointed", False)
        if enabled and not wrapped:
            block.forward = _checkpointed(block.forward)
        elif not enabled and wrapped:
            del block.forward                           # the class's forward again
    return model


def autocast(precision: str, device) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for "bf16", nothing for "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
