"""Random weights that make a parity test mean something, and key/shape contracts.

The default initialisation of a diffusion transformer zeroes its adaLN tables and output layer
(and leaves norms at (1, 0)), so two implementations that both output zeros, or that swap two
zero-initialised layers, would agree. Parity tests therefore fill or perturb every parameter.

`seed`: an int draws from a private `torch.Generator().manual_seed(seed)`; None draws from torch's
global generator (what `p.normal_()` / `torch.randn_like(p)` do), for tests whose inputs continue
that stream after the weights.
"""
from __future__ import annotations

from typing import Callable, Mapping, Union

import torch

Scale = Union[float, Callable[[str], float]]


def _generator(seed: int | None):
    return None if seed is None else torch.Generator().manual_seed(seed)


def _scale_of(scale: Scale, name: str) -> float:
    return scale(name) if callable(scale) else scale


def randomize(model: torch.nn.Module, seed: int | None, scale: Scale = 0.1) -> torch.nn.Module:
    """Replace every parameter by N(0, scale^2) values (`scale` may be a function of the parameter's
    name), in `named_parameters()` order; returns the model in eval mode."""
    g = _generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * _scale_of(scale, name))
    return model.eval()


def perturb(model: torch.nn.Module, seed: int | None, scale: Scale,
            where: Callable[[str], bool] | None = None) -> torch.nn.Module:
    """Add N(0, scale^2) noise to every parameter (or to those whose name satisfies `where`), keeping
    the initialisation's structure (norms stay near (1, 0)); returns the model in eval mode."""
    g = _generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if where is None or where(name):
                p.add_(torch.randn(p.shape, generator=g) * _scale_of(scale, name))
    return model.eval()


def random_state_dict(key_shapes: Mapping[str, tuple], seed: int, scale: Scale = 0.1) -> dict:
    """{key: N(0, scale^2) tensor of that shape}, in the order of `key_shapes` (a documented layout)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * _scale_of(scale, k) for k, shape in key_shapes.items()}


def shapes(state: Mapping) -> dict:
    """{key: shape tuple} of a state dict (tensors) or of a {key: shape} table."""
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}


def _listed(items: list, limit: int = 20) -> str:
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def assert_key_contract(ours: Mapping, theirs: Mapping, what: str = "") -> None:
    """The same keys with the same shapes on both sides (state dicts or {key: shape} tables), or a
    message listing every missing, extra and mis-shaped key."""
    ours, theirs = shapes(ours), shapes(theirs)
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    misshaped = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    if not (missing or extra or misshaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (expected, not in ours): {_listed(missing)}")
    if extra:
        parts.append(f"{len(extra)} extra (ours, not expected): {_listed(extra)}")
    if misshaped:
        parts.append(f"{len(misshaped)} mis-shaped: " + _listed([f"{k} ours {ours[k]} vs expected {theirs[k]}"
                                                                  for k in misshaped]))
    raise AssertionError(f"{what + ': ' if what else ''}key contract broken ({len(ours)} keys vs {len(theirs)} "
                         "expected); " + "; ".join(parts))
