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


def rescale_cfg(guided, cond, phi: float):
    """Guidance rescale (Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    arXiv:2305.08891, §3.4): scale the guided prediction (B, ...) to the per-sample standard deviation
    of the conditional one, then mix: phi * guided * std(cond) / std(guided) + (1 - phi) * guided.
    High guidance scales inflate the prediction's variance (over-exposed images); phi = 0 is plain CFG.
    std is over every dimension but the batch, with Bessel's correction (torch's default)."""
    dims = list(range(1, cond.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * guided
