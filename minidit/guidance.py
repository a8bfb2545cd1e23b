"""Classifier-free guidance (Ho & Salimans, arXiv:2207.12598).

    eps_guided = eps_uncond + s * (eps_cond - eps_uncond)

s = 1 is the conditional model, s = 0 the unconditional one, s > 1 extrapolates away from the
unconditional prediction. The same formula is applied to eps (DiT, PixArt), v (Hunyuan-DiT) or the
flow velocity (SD3); the network runs once on a batch holding both halves.
"""
from __future__ import annotations


def cfg(cond, uncond, scale: float):
    """uncond + scale * (cond - uncond)"""
    return uncond + scale * (cond - uncond)
