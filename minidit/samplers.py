"""Samplers: functions of a `model_fn(x_t, t) -> output` and a `Schedule`.

    DDPM ancestral sampling   Ho et al. 2020, Algorithm 2; learned variances from IDDPM
                              (arXiv:2102.09672). DiT's default: 250 respaced steps.
    DDIM                      Song et al., arXiv:2010.02502, eq. (12); eta = 0 is deterministic.
    DPM-Solver++(2M)          Lu et al., arXiv:2211.01095, Algorithm 2: a multistep second-order
                              solver of the diffusion ODE in lambda = log(alpha/sigma). PixArt's
                              default (20 steps), also diffusers' DPMSolverMultistepScheduler.

`schedule` may be respaced (`diffusion.respace`): step i then stands for the original timestep
`schedule.timesteps[i]`, which is what `model_fn` receives. Noise is drawn at every step (also the
last, where it is multiplied by 0) so that with the global RNG the random stream matches the
official DiT sampler.

Shape legend: B batch, C channels, H W spatial size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


# --------------------------------------------------------------------------------------------
# DPM-Solver++(2M) (Lu et al., arXiv:2211.01095)
#
# Variance-preserving diffusion: x_t = alpha_t x_0 + sigma_t eps, alpha_t^2 + sigma_t^2 = 1,
# alpha_t = sqrt(a_bar_t). In lambda_t = log(alpha_t / sigma_t) (half the log-SNR) the
# probability-flow ODE of the data prediction x0_theta has the exact solution (paper eq. 9)
#     x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0_theta d lambda.
# Holding x0_theta constant over the step gives the first-order solver (= DDIM); extrapolating it
# linearly in lambda from the previous step's x0 gives the second-order multistep solver 2M.
# --------------------------------------------------------------------------------------------


def vp_alpha_sigma(lam):
    """(alpha, sigma) of a VP schedule from lambda = log(alpha / sigma): alpha^2 = sigmoid(2 lambda).
    lambda = +inf (the clean end point, sigma = 0) gives (1, 0)."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    return torch.exp(0.5 * F.logsigmoid(2 * lam)), torch.exp(0.5 * F.logsigmoid(-2 * lam))


def _f32(x):
    return x.to(torch.promote_types(x.dtype, torch.float32))


def dpm_solver_pp_1_step(x_s, x0_s, lambda_s, lambda_t):
    """DPM-Solver++(1) from lambda_s to lambda_t > lambda_s (identical to deterministic DDIM):

        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s,      h = lambda_t - lambda_s

    lambda_t = +inf (sigma_t = 0) is allowed and returns x0_s: the last step of a schedule that ends
    at sigma = 0. Computed in float32 (float64 if x_s is float64).
    """
    (alpha_s, sigma_s), (alpha_t, sigma_t) = vp_alpha_sigma(lambda_s), vp_alpha_sigma(lambda_t)
    h = torch.as_tensor(lambda_t, dtype=torch.float64) - torch.as_tensor(lambda_s, dtype=torch.float64)
    return float(sigma_t / sigma_s) * _f32(x_s) - float(alpha_t * torch.expm1(-h)) * _f32(x0_s)


def dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, lambda_prev, lambda_s, lambda_t):
    """One DPM-Solver++(2M) step (paper Algorithm 2) from lambda_s to lambda_t, using the data
    predictions at lambda_s (x0_s) and at the previous point lambda_prev < lambda_s (x0_prev):

        h = lambda_t - lambda_s,  r = (lambda_s - lambda_prev) / h
        D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev
        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D
    """
    lambda_prev, lambda_s, lambda_t = (torch.as_tensor(v, dtype=torch.float64)
                                       for v in (lambda_prev, lambda_s, lambda_t))
    if not torch.isfinite(lambda_t):
        raise ValueError("the second-order step cannot reach sigma = 0 (lambda = inf): use dpm_solver_pp_1_step "
                         "for the last step (lower_order_final)")
    h = lambda_t - lambda_s
    r = (lambda_s - lambda_prev) / h
    D = (1 + 1 / (2 * r)).item() * _f32(x0_s) - (1 / (2 * r)).item() * _f32(x0_prev)
    return dpm_solver_pp_1_step(x_s, D, lambda_s, lambda_t)


@dataclass(frozen=True)
class DPMSolverGrid:
    """The N steps of a DPM-Solver run: step i goes from point i to point i+1 (float64).

    timesteps (N,): what model_fn receives at point i; alphas, sigmas (N+1,): alpha and sigma of
    every point, the last being the end point (the model is never evaluated there).
    """
    timesteps: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor

    @property
    def lambdas(self):
        return torch.log(self.alphas) - torch.log(self.sigmas)        # +inf where sigma = 0


def dpm_solver_grid(alphas_cumprod, num_steps: int, spacing: str = "linspace") -> DPMSolverGrid:
    """Time points for `num_steps` steps on a discrete schedule of T = len(alphas_cumprod) steps.

    "linspace"      diffusers' DPMSolverMultistepScheduler defaults (what its PixArt pipelines run):
                    timesteps round(linspace(0, T-1, N+1)) reversed, without the last (0); alpha and
                    sigma of those training steps; the end point is sigma = 0, so the last step
                    returns the model's x0 prediction.
    "time_uniform"  the official PixArt sampler (`DPMS`, NoiseScheduleVP('discrete')): continuous
                    s = linspace(1, 1/T, N+1); discrete step n sits at s = (n+1)/T and log(alpha) is
                    linear in s between them; the model gets the fractional (s - 1/T) * T; the end
                    point is step 0 (sigma_0 = sqrt(beta_0) = 0.01), not sigma = 0.
    """
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    T = len(abar)
    if not 1 <= num_steps < T:
        raise ValueError(f"num_steps must be in [1, {T}), got {num_steps}")
    if spacing == "linspace":
        t = torch.linspace(0, T - 1, num_steps + 1, dtype=torch.float64).round().flip(0)[:-1]   # (N,)
        a = abar[t.long()]
        alphas = torch.cat([a.sqrt(), torch.ones(1, dtype=torch.float64)])
        sigmas = torch.cat([(1 - a).sqrt(), torch.zeros(1, dtype=torch.float64)])
        return DPMSolverGrid(t, alphas, sigmas)
    if spacing == "time_uniform":
        s = torch.linspace(1.0, 1.0 / T, num_steps + 1, dtype=torch.float64)                     # (N+1,)
        log_alpha = 0.5 * torch.log(abar)                                                       # at s = (n+1)/T
        pos = s * T - 1                                                                         # fractional n
        lo = pos.floor().clamp(0, T - 2).long()
        frac = pos - lo
        la = (1 - frac) * log_alpha[lo] + frac * log_alpha[lo + 1]
        return DPMSolverGrid((s[:-1] - 1.0 / T) * T, la.exp(), (1 - (2 * la).exp()).sqrt())
    raise ValueError(f"unknown spacing {spacing!r}: use 'linspace' (diffusers) or 'time_uniform' (official PixArt)")


def predict_x0(model_output, x_t, alpha, sigma, prediction_type: str = "epsilon"):
    """The data prediction x0 from a network output: eps -> (x - sigma eps) / alpha,
    v -> alpha x - sigma v, sample -> itself."""
    if prediction_type == "epsilon":
        return (_f32(x_t) - sigma * _f32(model_output)) / alpha
    if prediction_type == "v_prediction":
        return alpha * _f32(x_t) - sigma * _f32(model_output)
    if prediction_type == "sample":
        return _f32(model_output)
    raise ValueError(f"unknown prediction_type {prediction_type!r}: epsilon, v_prediction or sample")


def dpm_solver_sample(model_fn, x_T, alphas_cumprod, num_steps: int = 20, *, spacing: str = "linspace",
                      prediction_type: str = "epsilon", lower_order_final: bool = True, callback=None,
                      progress: bool = True):
    """Sample with DPM-Solver++(2M): N model calls, x_T ~ N(0, I) -> x_0.

    model_fn(x, t) -> eps (or v / x0, see `prediction_type`) for a batch x at timesteps t (B,)
    (integer for "linspace", fractional for "time_uniform"); a [eps | v] output with 2C channels
    (learned sigma) is cut to its first C: an ODE solver needs only the mean. Step 0 is first order
    (no history yet), then 2M; with `lower_order_final` the last step is first order too (always,
    when it ends at sigma = 0). `callback(i, t, x)` sees x after step i.
    """
    grid = dpm_solver_grid(alphas_cumprod, num_steps, spacing)
    lam = grid.lambdas
    x, x0_prev = _f32(x_T), None
    for i in tqdm(range(num_steps), desc="DPM-Solver++", disable=not progress):
        t_i = grid.timesteps[i].item()
        t = torch.full((x.shape[0],), t_i, device=x.device,
                       dtype=torch.long if float(t_i).is_integer() else torch.float32)
        with torch.no_grad():
            out = model_fn(x, t)
        if out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        x0 = predict_x0(out, x, grid.alphas[i].item(), grid.sigmas[i].item(), prediction_type)
        last = i == num_steps - 1
        if x0_prev is None or (last and lower_order_final) or not math.isfinite(lam[i + 1].item()):
            x = dpm_solver_pp_1_step(x, x0, lam[i], lam[i + 1])
        else:
            x = dpm_solver_pp_2m_step(x, x0, x0_prev, lam[i - 1], lam[i], lam[i + 1])
        x0_prev = x0
        if callback is not None:
            callback(i, t, x)
    return x
