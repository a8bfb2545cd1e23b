"""The optimizer side of the loop: AdamW with parameter groups, warm-up + cosine, EMA of the weights.

Papers: AdamW (Loshchilov & Hutter, arXiv:1711.05101), cosine schedule (SGDR, arXiv:1608.03983); the
EMA of DiT (arXiv:2212.09748 §4: decay 0.9999) and PixArt (official `train_scripts/train.py`).

    lr(s)   = lr_max (s + 1) / W                                              s < W  (linear warm-up)
            = lr_max (m + (1 - m) (1 + cos(pi (s - W) / (S - W))) / 2)        W <= s < S  (cosine to m lr_max)
    EMA     theta_ema <- d theta_ema + (1 - d) theta        after every optimizer step
            d_n = min(decay, (1 + n) / (10 + n)) with `warmup=True` (n = updates so far): the zero-initialised
            start is forgotten quickly; DiT / PixArt use a fixed 0.9999 (`warmup=False`).

s is the 0-based optimizer step the rate is used for, S the total steps, W the warm-up steps, m
`min_ratio`. Parameter groups: the comparison article's PixArt recipe trains the embedders at 1e-4 and
the transformer at 5e-5 (`param_groups(model, 5e-5, {"y_embedder.": 1e-4, ...})`).
"""
from __future__ import annotations

import math

import torch
from torch.distributed.tensor import distribute_tensor


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """The factor on the peak learning rate at optimizer step `step` (0-based), formula above."""
    if total < 1 or warmup < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"need total >= 1, warmup >= 0, 0 <= min_ratio <= 1 (got {total}, {warmup}, {min_ratio})")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model, lr: float, lr_by_prefix: dict[str, float] | None = None, weight_decay: float = 0.0) -> list:
    """AdamW groups: every trainable parameter at `lr`, except those whose name starts with a prefix of
    `lr_by_prefix` (the first matching prefix wins). A prefix that matches nothing raises."""
    lr_by_prefix = dict(lr_by_prefix or {})
    groups = {prefix: [] for prefix in lr_by_prefix}
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        prefix = next((q for q in lr_by_prefix if name.startswith(q)), None)
        (rest if prefix is None else groups[prefix]).append(p)
    empty = [q for q, ps in groups.items() if not ps]
    if empty:
        raise ValueError(f"no trainable parameter's name starts with {empty}: check the prefixes "
                         f"(e.g. {[n for n, _ in model.named_parameters()][:3]})")
    out = [{"params": ps, "lr": lr_by_prefix[q], "weight_decay": weight_decay} for q, ps in groups.items()]
    if rest:
        out.append({"params": rest, "lr": lr, "weight_decay": weight_decay})
    return out


def make_optimizer(model, lr: float, *, lr_by_prefix=None, weight_decay: float = 0.0, betas=(0.9, 0.999),
                   eps: float = 1e-8, warmup: int = 0, total: int = 1, min_ratio: float = 0.0):
    """AdamW + a LambdaLR scheduler with `warmup_cosine` (both have state_dict(): saved on checkpoints)."""
    opt = torch.optim.AdamW(param_groups(model, lr, lr_by_prefix, weight_decay), lr=lr, betas=betas, eps=eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup=warmup, total=total, min_ratio=min_ratio))
    return opt, sched


class EMA:
    """An exponential moving average of a model's parameters (buffers copied), float32.

    `shadow` is a dict name -> tensor with the model's state-dict names, so it saves and exports like
    the model itself (the EMA weights are what DiT and PixArt release)."""

    def __init__(self, model, decay: float = 0.9999, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model) -> None:
        d = self.current_decay()
        params = dict(model.named_parameters())
        for k, v in model.state_dict().items():
            if k in params and params[k].requires_grad:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - d)          # d s + (1 - d) theta
            else:
                self.shadow[k].copy_(v)                                     # buffers, frozen weights
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"the EMA in the checkpoint has other keys than the model: {sorted(missing)[:5]}")
        self.decay, self.warmup, self.updates = state["decay"], state["warmup"], state["updates"]
        for k, v in state["shadow"].items():
            old = self.shadow[k]
            if hasattr(old, "device_mesh"):                # FSDP: this process keeps its shard of the average
                v = distribute_tensor(v.float(), old.device_mesh, old.placements)
            self.shadow[k] = v.float().clone().to(old.device)

    def copy_to(self, model) -> None:
        """Load the averaged weights into `model` (in its dtype)."""
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()})
