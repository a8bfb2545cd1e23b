"""Rectified-flow maths: the straight path from data to noise, its velocity, and the SD3 shift.

Papers: Flow Matching (Lipman et al., arXiv:2210.02747), Rectified Flow (Liu et al.,
arXiv:2209.03003); Stable Diffusion 3 (Esser et al., arXiv:2403.03206, §2-3: the shift and the
timestep densities). Code that uses it: `minidit/samplers.py` (the flow grid, Euler), the SD3
and video models (their own issues).

    path        x_sigma = (1 - sigma) x_0 + sigma eps,        sigma in [0, 1]  (0 = data, 1 = noise)
    velocity    v = d x_sigma / d sigma = eps - x_0           what the network predicts
    x_0 back    x_0 = x_sigma - sigma v                        (`samplers.predict_x0`, "flow")
    loss        || v_theta(x_sigma, sigma) - (eps - x_0) ||^2
    shift       sigma' = s sigma / (1 + (s - 1) sigma)         s > 1 spends more steps at high noise

The same path is a diffusion with alpha = 1 - sigma (not variance preserving: alpha^2 + sigma^2 < 1
in between), which is how `samplers.Grid` stores it, so DPM-Solver++ runs on it unchanged.

The model is fed `timestep = sigma * num_train_timesteps` (1000), as SD3's official code and
diffusers' `FlowMatchEulerDiscreteScheduler` do.

Shape legend: B batch, any further dims are the sample's.
"""
from __future__ import annotations

import torch


def _per_sample(sigma, x):
    """sigma as a tensor that broadcasts against x: a scalar, or (B,) -> (B, 1, 1, ...)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))) if sigma.ndim == 1 else sigma


def flow_interpolate(x0, noise, sigma):
    """x_sigma = (1 - sigma) x_0 + sigma eps; sigma a number or one value per sample (B,)."""
    s = _per_sample(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0, noise):
    """The velocity of the straight path, d x_sigma / d sigma = eps - x_0 (independent of sigma)."""
    return noise - x0


def flow_loss(model_fn, x0, sigma, noise, num_train_timesteps: int = 1000):
    """Per-sample flow-matching loss mean((v_theta - (eps - x_0))^2), shape (B,).

    `model_fn(x_sigma, timestep)` gets timestep = sigma * num_train_timesteps, as SD3 is trained."""
    x_sigma = flow_interpolate(x0, noise, sigma)
    timestep = torch.as_tensor(sigma, dtype=torch.float32, device=x0.device) * num_train_timesteps
    err = (model_fn(x_sigma, timestep) - velocity_target(x0, noise)) ** 2
    return err.mean(dim=list(range(1, err.ndim)))


def shift_sigmas(sigma, shift: float):
    """SD3's shift (paper eq. 23, `time_snr_shift` in the official code): sigma' = s sigma / (1 + (s-1) sigma).

    It keeps 0 and 1 fixed and, for s > 1, moves every other point towards noise: the signal-to-noise
    ratio of a resolution with s^2 times more pixels at the same sigma. shift = 1 is the identity."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)
