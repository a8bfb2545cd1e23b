"""Samplers: functions of a `model_fn(x_t, t) -> output` and a `Schedule`.

    DDPM ancestral sampling   Ho et al. 2020, Algorithm 2; learned variances from IDDPM
                              (arXiv:2102.09672). DiT's default: 250 respaced steps.
    DDIM                      Song et al., arXiv:2010.02502, eq. (12); eta = 0 is deterministic.

`schedule` may be respaced (`diffusion.respace`): step i then stands for the original timestep
`schedule.timesteps[i]`, which is what `model_fn` receives. Noise is drawn at every step (also the
last, where it is multiplied by 0) so that with the global RNG the random stream matches the
official DiT sampler.

Shape legend: B batch, C channels, H W spatial size.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .diffusion import Schedule, extract, p_mean_variance


def _randn(x, generator):
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def ddpm_step(schedule: Schedule, i: int, model_output, x_t, noise, *, learn_sigma: bool = True,
              variance: str = "fixed_small", clip_denoised: bool = False):
    """One ancestral step x_t -> x_{t-1} = mean + sigma * noise (no noise at the last step).

    Returns (x_prev, pred_x0).
    """
    t = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
    out = p_mean_variance(schedule, model_output, x_t, t, learn_sigma=learn_sigma,
                          variance=variance, clip_denoised=clip_denoised)
    nonzero = 0.0 if i == 0 else 1.0
    return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise, out["pred_x0"]


def ddim_step(schedule: Schedule, i: int, model_output, x_t, noise=None, *, eta: float = 0.0,
              clip_denoised: bool = False):
    """One DDIM step (Song et al. eq. 12). Only the first C output channels (eps) are used.

        x_{t-1} = sqrt(a_bar_prev) x0_pred + sqrt(1 - a_bar_prev - sigma^2) eps + sigma z
        sigma   = eta sqrt((1 - a_bar_prev)/(1 - a_bar_t)) sqrt(1 - a_bar_t / a_bar_prev)
    Returns (x_prev, pred_x0).
    """
    C = x_t.shape[1]
    t = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
    out = p_mean_variance(schedule, model_output, x_t, t, learn_sigma=model_output.shape[1] == 2 * C,
                          clip_denoised=clip_denoised)
    pred_x0 = out["pred_x0"]
    abar = extract(schedule.alphas_cumprod, t, x_t.shape)
    abar_prev = extract(schedule.alphas_cumprod_prev, t, x_t.shape)
    # eps consistent with the (possibly clipped) x0, as the official code recomputes it
    eps = (extract(torch.sqrt(1.0 / schedule.alphas_cumprod), t, x_t.shape) * x_t - pred_x0) / \
        extract(torch.sqrt(1.0 / schedule.alphas_cumprod - 1.0), t, x_t.shape)
    sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
    mean = pred_x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma**2) * eps
    if i == 0 or eta == 0 or noise is None:
        return mean, pred_x0
    return mean + sigma * noise, pred_x0


def ddpm_sample(model_fn, x_T, schedule: Schedule, *, learn_sigma: bool = True, variance: str = "fixed_small",
                clip_denoised: bool = False, generator=None, progress: bool = True):
    """Ancestral sampling from x_T ~ N(0, I) down to x_0 through every step of `schedule`."""
    x = x_T
    for i in tqdm(range(schedule.num_steps - 1, -1, -1), desc="DDPM", disable=not progress):
        t = torch.full((x.shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=x.device)
        with torch.no_grad():
            model_output = model_fn(x, t)
        noise = _randn(x, generator)
        x, _ = ddpm_step(schedule, i, model_output, x, noise, learn_sigma=learn_sigma,
                         variance=variance, clip_denoised=clip_denoised)
    return x


def ddim_sample(model_fn, x_T, schedule: Schedule, *, eta: float = 0.0, clip_denoised: bool = False,
                generator=None, progress: bool = True):
    """DDIM sampling through every step of `schedule` (respace it to choose the number of steps)."""
    x = x_T
    for i in tqdm(range(schedule.num_steps - 1, -1, -1), desc="DDIM", disable=not progress):
        t = torch.full((x.shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=x.device)
        with torch.no_grad():
            model_output = model_fn(x, t)
        noise = _randn(x, generator) if eta > 0 else None
        x, _ = ddim_step(schedule, i, model_output, x, noise, eta=eta, clip_denoised=clip_denoised)
    return x
