"""Samplers: every one is `X_sample(model_fn, x_T, grid, *, prediction_type, ...)`.

    DDPM ancestral sampling   Ho et al. 2020, Algorithm 2; learned variances from IDDPM
                              (arXiv:2102.09672). DiT's default: 250 respaced steps.
    DDIM                      Song et al., arXiv:2010.02502, eq. (12); eta = 0 is deterministic.
    DPM-Solver++(2M)          Lu et al., arXiv:2211.01095, Algorithm 2: a multistep second-order
                              solver of the diffusion ODE in lambda = log(alpha/sigma). PixArt's
                              default (20 steps), also diffusers' DPMSolverMultistepScheduler.
    Euler (flow)              x <- x + (sigma_next - sigma) v on the rectified-flow path (SD3,
                              diffusers' FlowMatchEulerDiscreteScheduler, the official sample_euler).

SD3.5's official samplers (`sd3_impls.py`: `sample_euler`, `sample_dpmpp_2m`, copied from
k-diffusion) are these two on `grid.flow_grid(..., k_diffusion=True)` (spacing "flow_k_diffusion").

`model_fn(x, t)` returns the network output for a batch x at timesteps t (B,). `grid`
(`minidit/grid.py`) says where it is evaluated. `prediction_type` says what the output is:

    "epsilon"        the noise eps                      x0 = (x - sigma eps) / alpha
    "v_prediction"   v = alpha eps - sigma x0           x0 = alpha x - sigma v        (Hunyuan-DiT)
    "flow"           the velocity eps - x0              x0 = x - sigma v              (SD3; alpha = 1 - sigma)
    "sample"         x0 itself

`learn_sigma=True` says the output is [prediction | v_var] with twice the sample's channels
(DiT, PixArt, Hunyuan): `diffusion.split_output` is the one place where that second half is cut
off; only DDPM with `variance="learned_range"` uses it. A channel count that fits neither is an
error. The data prediction x0 comes from one function, `diffusion.predict_x0`.

Noise is drawn at every DDPM step (also the last, where it is multiplied by 0) so that with the
global RNG the random stream matches the official DiT sampler; `noise_fn(x)` replaces the draw.

`Sampler` bundles one choice of sampler and grid (what a diffusers `scheduler_config.json`
describes, read by `minidit/scheduler_config.py`); `Sampler.run` samples with it.

Shape legend: B batch, C channels, H W spatial size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .diffusion import (PREDICTION_TYPES, Schedule, alpha_sigma, extract, get_beta_schedule, make_schedule,
                        p_mean_variance, predict_x0, split_output)
from .flow import DynamicShift
from .grid import SPACINGS, Grid, discrete_grid, flow_grid, opensora_flow_grid, time_uniform_grid, training_timesteps


def _randn(x, generator):
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _f32(x):
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_prediction_type(prediction_type):
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}: one of {', '.join(PREDICTION_TYPES)}")


# --------------------------------------------------------------------------------------------
# DDPM and DDIM: steps on a (respaced) DDPM Schedule
# --------------------------------------------------------------------------------------------

def ddpm_step(schedule: Schedule, i: int, model_output, x_t, noise, *, learn_sigma: bool = True,
              variance: str = "fixed_small", clip_denoised: bool = False, prediction_type: str = "epsilon"):
    """One ancestral step x_t -> x_{t-1} = mean + sigma * noise (no noise at the last step), step i
    of `schedule`. `model_output`: [eps | v_var] with learn_sigma (learned-range variance), else eps
    (or v / x0, see `prediction_type`) and the fixed `variance`. Returns (x_prev, pred_x0).
    """
    t = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
    out = p_mean_variance(schedule, model_output, x_t, t, learn_sigma=learn_sigma, variance=variance,
                          clip_denoised=clip_denoised, prediction_type=prediction_type)
    nonzero = 0.0 if i == 0 else 1.0
    return out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise, out["pred_x0"]


def ddim_step(schedule: Schedule, i: int, model_output, x_t, noise=None, *, eta: float = 0.0,
              clip_denoised: bool = False, prediction_type: str = "epsilon"):
    """One DDIM step (Song et al. eq. 12) from step i of `schedule`; `model_output` has C channels.

        x_{t-1} = sqrt(a_bar_prev) x0_pred + sqrt(1 - a_bar_prev - sigma^2) eps + sigma z
        sigma   = eta sqrt((1 - a_bar_prev)/(1 - a_bar_t)) sqrt(1 - a_bar_t / a_bar_prev)
    Returns (x_prev, pred_x0).
    """
    t = torch.full((x_t.shape[0],), i, dtype=torch.long, device=x_t.device)
    pred, _ = split_output(model_output, x_t, learn_sigma=False)
    pred_x0 = predict_x0(pred, x_t, *alpha_sigma(schedule, t, x_t.shape), prediction_type)
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
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


def _loop(grid: Grid, desc: str, progress: bool):
    return tqdm(range(grid.num_steps), desc=desc, disable=not progress)


def ddpm_sample(model_fn, x_T, grid: Grid, *, prediction_type: str = "epsilon", learn_sigma: bool = False,
                variance: str = "fixed_small", clip_denoised: bool = False, generator=None, noise_fn=None,
                callback=None, progress: bool = True):
    """Ancestral sampling from x_T ~ N(0, I) down to x_0 through every point of a discrete `grid`.

    variance: "learned_range" (the model's [eps | v_var], needs learn_sigma) | "fixed_small"
    (beta~_t) | "fixed_large" (beta_t)."""
    _check_prediction_type(prediction_type)
    if variance == "learned_range" and not learn_sigma:
        raise ValueError("variance='learned_range' needs a learned-sigma model (learn_sigma=True)")
    if grid.num_steps < 2:
        raise ValueError("DDPM needs at least 2 steps: its variances come from the posterior between two kept "
                         "timesteps, and a 1-step chain has none (the official code fails there too); sample one "
                         "step with DDIM or DPM-Solver++ instead")
    schedule, x, learned = grid.to_schedule(), x_T, variance == "learned_range"
    for j in _loop(grid, "DDPM", progress):
        i = grid.num_steps - 1 - j                                  # index into the ascending schedule
        t = grid.model_timesteps(j, x.shape[0], x.device)
        with torch.no_grad():
            out = model_fn(x, t)
        if not learned:                                             # drop a learned-sigma half, if any
            out, _ = split_output(out, x, learn_sigma)
        noise = _randn(x, generator) if noise_fn is None else noise_fn(x)
        x, _ = ddpm_step(schedule, i, out, x, noise, learn_sigma=learned,
                         variance="fixed_small" if learned else variance, clip_denoised=clip_denoised,
                         prediction_type=prediction_type)
        if callback is not None:
            callback(j, t, x)
    return x


def ddim_sample(model_fn, x_T, grid: Grid, *, prediction_type: str = "epsilon", learn_sigma: bool = False,
                eta: float = 0.0, clip_denoised: bool = False, generator=None, noise_fn=None, callback=None,
                progress: bool = True):
    """DDIM sampling through every point of a discrete `grid` (eta = 0: deterministic)."""
    _check_prediction_type(prediction_type)
    schedule, x = grid.to_schedule(), x_T
    for j in _loop(grid, "DDIM", progress):
        i = grid.num_steps - 1 - j
        t = grid.model_timesteps(j, x.shape[0], x.device)
        with torch.no_grad():
            pred, _ = split_output(model_fn(x, t), x, learn_sigma)
        noise = None if eta == 0 else _randn(x, generator) if noise_fn is None else noise_fn(x)
        x, _ = ddim_step(schedule, i, pred, x, noise, eta=eta, clip_denoised=clip_denoised,
                         prediction_type=prediction_type)
        if callback is not None:
            callback(j, t, x)
    return x


# --------------------------------------------------------------------------------------------
# DPM-Solver++(2M) (Lu et al., arXiv:2211.01095)
#
# x_t = alpha_t x_0 + sigma_t eps. In lambda_t = log(alpha_t / sigma_t) (half the log-SNR) the
# probability-flow ODE of the data prediction x0_theta has the exact solution (paper eq. 9)
#     x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0_theta d lambda.
# Holding x0_theta constant over the step gives the first-order solver (= DDIM); extrapolating it
# linearly in lambda from the previous step's x0 gives the second-order multistep solver 2M.
# The update needs only alpha and sigma at both ends, so it runs on any grid: VP (DDPM-trained
# models) or the flow path (alpha = 1 - sigma).
# --------------------------------------------------------------------------------------------

def vp_alpha_sigma(lam):
    """(alpha, sigma) of a VP schedule from lambda = log(alpha / sigma): alpha^2 = sigmoid(2 lambda).
    lambda = +inf (the clean end point, sigma = 0) gives (1, 0)."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    return torch.exp(0.5 * F.logsigmoid(2 * lam)), torch.exp(0.5 * F.logsigmoid(-2 * lam))


def _dpm_update(x_s, D, alpha_s, sigma_s, alpha_t, sigma_t):
    """x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D, h = lambda_t - lambda_s (float64 scalars)."""
    h = (torch.log(alpha_t) - torch.log(sigma_t)) - (torch.log(alpha_s) - torch.log(sigma_s))
    return float(sigma_t / sigma_s) * _f32(x_s) - float(alpha_t * torch.expm1(-h)) * _f32(D)


def _d_2m(x0_s, x0_prev, lambda_prev, lambda_s, lambda_t):
    """2M's extrapolated data prediction D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev, r = (l_s - l_prev)/h."""
    r = (lambda_s - lambda_prev) / (lambda_t - lambda_s)
    return (1 + 1 / (2 * r)).item() * _f32(x0_s) - (1 / (2 * r)).item() * _f32(x0_prev)


def dpm_solver_pp_1_step(x_s, x0_s, lambda_s, lambda_t):
    """DPM-Solver++(1) on a VP schedule from lambda_s to lambda_t > lambda_s (= deterministic DDIM):

        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0_s,      h = lambda_t - lambda_s

    lambda_t = +inf (sigma_t = 0) is allowed and returns x0_s: the last step of a schedule that ends
    at sigma = 0. Computed in float32 (float64 if x_s is float64).
    """
    return _dpm_update(x_s, x0_s, *vp_alpha_sigma(lambda_s), *vp_alpha_sigma(lambda_t))


def dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, lambda_prev, lambda_s, lambda_t):
    """One DPM-Solver++(2M) step (paper Algorithm 2) on a VP schedule from lambda_s to lambda_t,
    using the data predictions at lambda_s (x0_s) and at the previous point lambda_prev < lambda_s:

        h = lambda_t - lambda_s,  r = (lambda_s - lambda_prev) / h
        D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev
        x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D
    """
    lambda_prev, lambda_s, lambda_t = (torch.as_tensor(v, dtype=torch.float64)
                                       for v in (lambda_prev, lambda_s, lambda_t))
    if not torch.isfinite(lambda_t):
        raise ValueError("the second-order step cannot reach sigma = 0 (lambda = inf): use dpm_solver_pp_1_step "
                         "for the last step (lower_order_final)")
    return dpm_solver_pp_1_step(x_s, _d_2m(x0_s, x0_prev, lambda_prev, lambda_s, lambda_t), lambda_s, lambda_t)


def dpm_solver_sample(model_fn, x_T, grid: Grid, *, prediction_type: str = "epsilon", learn_sigma: bool = False,
                      lower_order_final: bool = True, callback=None, progress: bool = True):
    """DPM-Solver++(2M): N model calls, x_T ~ N(0, I) -> x_0, on any grid.

    Step 0 is first order (no history yet), then 2M; with `lower_order_final` the last step is first
    order too (always, when it ends at sigma = 0). `callback(i, t, x)` sees x after step i.
    """
    _check_prediction_type(prediction_type)
    lam, A, S = grid.lambdas, grid.alphas, grid.sigmas
    x, x0_prev = _f32(x_T), None
    for i in _loop(grid, "DPM-Solver++", progress):
        t = grid.model_timesteps(i, x.shape[0], x.device)
        with torch.no_grad():
            pred, _ = split_output(model_fn(x, t), x, learn_sigma)
        x0 = predict_x0(pred, x, A[i].item(), S[i].item(), prediction_type)
        last = i == grid.num_steps - 1
        if x0_prev is None or (last and lower_order_final) or not math.isfinite(lam[i + 1].item()):
            D = x0
        else:
            D = _d_2m(x0, x0_prev, lam[i - 1], lam[i], lam[i + 1])
        x = _dpm_update(x, D, A[i], S[i], A[i + 1], S[i + 1])
        x0_prev = x0
        if callback is not None:
            callback(i, t, x)
    return x


# --------------------------------------------------------------------------------------------
# Euler on the rectified-flow path
# --------------------------------------------------------------------------------------------

def euler_step(x, v, sigma, sigma_next):
    """One Euler step of the flow ODE dx/dsigma = v: x + (sigma_next - sigma) v (sigma_next < sigma).

    Also k-diffusion's / SD3.5's `sample_euler` step, which writes v as (x - x0) / sigma."""
    return _f32(x) + float(sigma_next - sigma) * _f32(v)


def euler_sample(model_fn, x_T, grid: Grid, *, prediction_type: str = "flow", learn_sigma: bool = False,
                 callback=None, progress: bool = True):
    """The flow ODE dx/dsigma = v with Euler steps: x <- x + (sigma_{i+1} - sigma_i) v_i, in float32.

    For a "flow" model v is its output; for other prediction types v = (x - x0) / sigma. Runs on a
    flow grid (alpha = 1 - sigma) or the official k-diffusion view of it (alpha = 1): the steps are
    the same, since (x - x0) / sigma is the velocity on both."""
    _check_prediction_type(prediction_type)
    ones = torch.ones_like(grid.alphas)
    if not (torch.allclose(grid.alphas + grid.sigmas, ones, rtol=0, atol=1e-12)
            or torch.equal(grid.alphas, ones)):
        raise ValueError("the Euler flow sampler needs a flow grid (alpha = 1 - sigma, or alpha = 1 as in "
                         "k-diffusion), e.g. grid.flow_grid")
    S, x = grid.sigmas, _f32(x_T)
    for i in _loop(grid, "Euler", progress):
        t = grid.model_timesteps(i, x.shape[0], x.device)
        with torch.no_grad():
            pred, _ = split_output(model_fn(x, t), x, learn_sigma)
        v = pred if prediction_type == "flow" else \
            (x - predict_x0(pred, x, grid.alphas[i].item(), S[i].item(), prediction_type)) / S[i].item()
        x = euler_step(x, v, S[i], S[i + 1])
        if callback is not None:
            callback(i, t, x)
    return x


# --------------------------------------------------------------------------------------------
# One sampling choice: sampler + grid (what a diffusers scheduler_config.json describes)
# --------------------------------------------------------------------------------------------

SAMPLERS = ("ddpm", "ddim", "dpm_solver++", "euler")


@dataclass(frozen=True)
class Sampler:
    """A sampler and the grid it runs on. `grid(num_steps)` builds the grid, `run(...)` samples.
    (`scheduler_config.sampler_from_scheduler_config` reads one from a diffusers folder.)

    With `dynamic_shift` (diffusers' use_dynamic_shifting) the flow grid depends on the image: pass
    `image_seq_len` (its token count, (H / patch) (W / patch) of the latent) to `grid` / `run`."""
    name: str = "ddpm"                    # "ddpm" | "ddim" | "dpm_solver++" | "euler"
    prediction_type: str = "epsilon"      # see the module docstring
    variance: str = "fixed_small"         # ddpm: "learned_range" | "fixed_small" | "fixed_large"
    clip_denoised: bool = False           # ddpm, ddim: clamp the predicted x0 to [-1, 1]
    eta: float = 0.0                      # ddim
    lower_order_final_below: int | None = None   # dpm_solver++: first-order last step only below this
                                                 # many steps (None: always, as diffusers)
    spacing: str = "leading"              # grid.SPACINGS: iddpm | leading | trailing | linspace | time_uniform |
                                          # flow | flow_k_diffusion (SD3.5's official samplers) |
                                          # flow_opensora (Open-Sora 1.2's rflow; shift = flow.opensora_shift)
    steps_offset: int = 0                 # diffusers' steps_offset (leading spacing)
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"         # DDPM-trained models (diffusion.get_beta_schedule)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    shift: float = 1.0                    # flow: SD3's shift (static)
    dynamic_shift: DynamicShift | None = None    # flow: a shift chosen per image size instead (mu)

    def __post_init__(self):
        if self.name not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.name!r}: one of {', '.join(SAMPLERS)}")
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {self.spacing!r}: one of {', '.join(SPACINGS)}")
        _check_prediction_type(self.prediction_type)
        if self.dynamic_shift is not None and (not self.spacing.startswith("flow") or self.shift != 1.0):
            raise ValueError("dynamic_shift needs a flow spacing and replaces the static shift (leave shift=1)")

    def alphas_cumprod(self) -> torch.Tensor:
        betas = get_beta_schedule(self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end)
        return make_schedule(betas).alphas_cumprod

    def grid(self, num_steps: int, *, image_seq_len: int | None = None) -> Grid:
        """The grid of a `num_steps` run. `image_seq_len` (the image's token count) is needed by a
        dynamic-shift sampler and ignored by every other one."""
        T = self.num_train_timesteps
        if self.spacing == "flow_opensora":
            if self.dynamic_shift is not None:
                raise ValueError("flow_opensora takes its shift from flow.opensora_shift(height, width, num_frames) "
                                 "as a static shift=, not a dynamic_shift")
            return opensora_flow_grid(num_steps, self.shift, T)
        if self.spacing.startswith("flow"):
            k_diffusion = self.spacing == "flow_k_diffusion"
            if self.dynamic_shift is None:
                return flow_grid(num_steps, self.shift, T, k_diffusion=k_diffusion)
            if image_seq_len is None:
                raise ValueError("this sampler shifts its grid by the image size (dynamic shift): pass "
                                 "image_seq_len=(H // patch) * (W // patch), the latent's token count")
            return flow_grid(num_steps, mu=self.dynamic_shift.mu(image_seq_len), num_train_timesteps=T,
                             time_shift_type=self.dynamic_shift.time_shift_type, k_diffusion=k_diffusion)
        if self.spacing == "time_uniform":
            return time_uniform_grid(self.alphas_cumprod(), num_steps)
        steps = training_timesteps(T, num_steps, self.spacing, self.steps_offset,
                                   multistep=self.name == "dpm_solver++")
        # diffusers' DDIM always steps from t to t - T//n: that is a respaced chain only if every visited
        # timestep is T//n after the previous one and the first is below T//n (then it steps to "t < 0").
        r = T // num_steps
        if self.name == "ddim" and self.spacing != "iddpm" and not (steps[0] < r and all(b - a == r for a, b in zip(steps, steps[1:]))):
            raise ValueError(f"DDIM with {self.spacing!r} spacing and {num_steps} steps is not a consistent "
                             f"chain in diffusers (it always steps by {r}); use 'leading', or 'trailing' with a "
                             f"step count dividing {T}")
        return discrete_grid(self.alphas_cumprod(), steps)

    def run(self, model_fn, x_T, num_steps: int, *, learn_sigma: bool = False, generator=None, noise_fn=None,
            callback=None, progress: bool = True, image_seq_len: int | None = None):
        """Sample x_0 from x_T in `num_steps` model calls with this sampler and grid."""
        grid = self.grid(num_steps, image_seq_len=image_seq_len)
        common = dict(prediction_type=self.prediction_type, learn_sigma=learn_sigma, callback=callback,
                      progress=progress)
        if self.name == "ddpm":
            return ddpm_sample(model_fn, x_T, grid, variance=self.variance, clip_denoised=self.clip_denoised,
                               generator=generator, noise_fn=noise_fn, **common)
        if self.name == "ddim":
            return ddim_sample(model_fn, x_T, grid, eta=self.eta, clip_denoised=self.clip_denoised,
                               generator=generator, noise_fn=noise_fn, **common)
        if self.name == "dpm_solver++":
            lower = self.lower_order_final_below is None or num_steps < self.lower_order_final_below
            return dpm_solver_sample(model_fn, x_T, grid, lower_order_final=lower, **common)
        return euler_sample(model_fn, x_T, grid, **common)
