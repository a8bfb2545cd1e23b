"""DDPM maths: noise schedules, the forward process, the posterior and the training losses.

Papers: DDPM (Ho et al., arXiv:2006.11239), Improved DDPM (Nichol & Dhariwal, arXiv:2102.09672:
learned variances, the hybrid loss, timestep respacing). Official numerics follow DiT's
`diffusion/gaussian_diffusion.py` and `respace.py`: every schedule array is computed in float64 and
cast to float32 only when it is gathered for a batch (`extract`). Networks know nothing of this
file: they map (x_t, t, cond) -> prediction.

    forward process   q(x_t | x_0)       = N( sqrt(a_bar_t) x_0, (1 - a_bar_t) I )
    posterior         q(x_{t-1}|x_t,x_0) = N( coef1_t x_0 + coef2_t x_t, beta~_t I )
                      beta~_t = beta_t (1 - a_bar_{t-1}) / (1 - a_bar_t)
    learned range     log sigma_t^2 = f log beta_t + (1 - f) log beta~_t,  f = (v + 1) / 2
    simple loss       || eps - eps_theta(x_t, t) ||^2
    hybrid loss       simple + L_vlb (KL in bits/dim, eps frozen, only the variance learns from it)

Glossary (paper symbol | code name)
  beta_t | betas        alpha_t | alphas        a_bar_t | alphas_cumprod
  beta~_t | posterior_variance                  v | model_var_values (the 2nd half of the output)

Shape legend: B batch, C channels, H W spatial size, S number of (respaced) steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "flow", "sample")

# --------------------------------------------------------------------------------------------
# Beta schedules (float64)
# --------------------------------------------------------------------------------------------


def get_beta_schedule(name: str, num_timesteps: int = 1000, beta_start: float | None = None,
                      beta_end: float | None = None) -> torch.Tensor:
    """Betas for `num_timesteps` steps, float64.

    linear             DDPM / DiT / PixArt: linspace(1e-4, 0.02) (scaled so that other step
                       counts keep the same curve, as the official `get_named_beta_schedule`)
    scaled_linear      Stable Diffusion / Hunyuan: linspace(sqrt(0.00085), sqrt(0.012))^2
    squaredcos_cap_v2  IDDPM cosine: a_bar(t) = cos((t/T + 0.008)/1.008 * pi/2)^2, beta <= 0.999
    """
    if name == "linear":
        scale = 1000 / num_timesteps
        start = scale * 1e-4 if beta_start is None else beta_start
        end = scale * 0.02 if beta_end is None else beta_end
        return torch.linspace(start, end, num_timesteps, dtype=torch.float64)
    if name == "scaled_linear":
        start = 0.00085 if beta_start is None else beta_start
        end = 0.012 if beta_end is None else beta_end
        return torch.linspace(start**0.5, end**0.5, num_timesteps, dtype=torch.float64) ** 2
    if name == "squaredcos_cap_v2":
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), 0.999)
                 for i in range(num_timesteps)]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {name!r}; use linear, scaled_linear or squaredcos_cap_v2")


@dataclass(frozen=True)
class Schedule:
    """All the per-step constants of a (possibly respaced) Gaussian diffusion, float64, shape (S,).

    `timesteps[i]` is the original (training) timestep index that step i stands for — what the
    network is fed. For the full schedule it is arange(S).
    """
    betas: torch.Tensor
    timesteps: torch.Tensor

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self):
        return torch.cumprod(1.0 - self.betas, dim=0)

    @property
    def alphas_cumprod_prev(self):
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])

    @property
    def posterior_variance(self):
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_log_variance_clipped(self):
        # beta~_0 = 0; the official code replaces it by beta~_1 so the log stays finite.
        var = self.posterior_variance
        return torch.log(torch.cat([var[1:2], var[1:]]))

    @property
    def posterior_mean_coef1(self):
        return self.betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @property
    def posterior_mean_coef2(self):
        return (1.0 - self.alphas_cumprod_prev) * torch.sqrt(1.0 - self.betas) / (1.0 - self.alphas_cumprod)


def make_schedule(betas: torch.Tensor) -> Schedule:
    betas = betas.to(torch.float64)
    if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
        raise ValueError("betas must be a 1-D tensor with values in (0, 1]")
    return Schedule(betas=betas, timesteps=torch.arange(len(betas)))


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """Which of the original steps a respaced sampler keeps (IDDPM §4; DiT's `create_diffusion("250")`).

    `section_counts` is a list of step counts, one per equal section of [0, num_timesteps), or a
    string: "250" / "10,15,20" (per-section counts) or "ddim50" (a fixed stride, DDIM-style).
    Within a section the kept steps are evenly spaced and include both ends, rounded.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot make exactly {desired} steps from {num_timesteps} with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot take {count} steps from a section of {size}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):  # accumulate like the official code: the rounding must match
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))


def respace(schedule: Schedule, use_timesteps) -> Schedule:
    """A shorter chain through `use_timesteps` with the same a_bar at the kept steps.

    beta'_i = 1 - a_bar[t_i] / a_bar[t_{i-1}], so q(x_t | x_0) is unchanged at every kept step.
    """
    use = sorted(set(int(t) for t in use_timesteps))
    if not use or use[0] < 0 or use[-1] >= schedule.num_steps:
        raise ValueError(f"timesteps must lie in [0, {schedule.num_steps}), got {use[:3]}...{use[-3:]}")
    abar = schedule.alphas_cumprod[use]
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return Schedule(betas=1.0 - abar / abar_prev, timesteps=schedule.timesteps[use])


def extract(arr: torch.Tensor, t: torch.Tensor, shape) -> torch.Tensor:
    """arr[t] as float32, shaped (B, 1, 1, ...) to broadcast against a tensor of `shape`.

    The float64 table is cast to float32 before it moves to `t`'s device (the same numbers as
    casting after the gather, as the official code does; and MPS has no float64)."""
    out = arr.to(dtype=torch.float32).to(t.device)[t]
    return out.reshape(-1, *([1] * (len(shape) - 1)))


# --------------------------------------------------------------------------------------------
# Forward process and posterior
# --------------------------------------------------------------------------------------------


def q_sample(schedule: Schedule, x0, t, noise):
    """x_t = sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0.shape) * x0 + extract((1.0 - abar).sqrt(), t, x0.shape) * noise


def q_posterior_mean_variance(schedule: Schedule, x0, x_t, t):
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
    mean = (extract(schedule.posterior_mean_coef1, t, x_t.shape) * x0
            + extract(schedule.posterior_mean_coef2, t, x_t.shape) * x_t)
    var = extract(schedule.posterior_variance, t, x_t.shape)
    log_var = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
    return mean, var, log_var


def split_output(model_output, x, learn_sigma: bool):
    """(prediction, v_var or None): the one place where a learned-sigma output [prediction | v_var]
    (2C channels for a C-channel sample) is cut in two. learn_sigma=False expects C channels.
    Any other channel count raises, instead of being silently sliced."""
    C, n = x.shape[1], model_output.shape[1]
    want = 2 * C if learn_sigma else C
    if n != want:
        hint = (" This is a learned-sigma model ([prediction | variance]): pass learn_sigma=True." if n == 2 * C else
                " This model has no learned sigma: pass learn_sigma=False." if n == C else "")
        raise ValueError(f"the model returned {n} output channels for a {C}-channel sample, but "
                         f"learn_sigma expects {want}.{hint}")
    if not learn_sigma:
        return model_output, None
    return model_output[:, :C], model_output[:, C:]


def _gather64(arr: torch.Tensor, t: torch.Tensor, shape) -> torch.Tensor:
    """arr[t] in float64 on the CPU, shaped (B, 1, 1, ...) (for coefficients formed before the cast)."""
    return arr[t.cpu()].reshape(-1, *([1] * (len(shape) - 1)))


def predict_x0(prediction, x_t, alpha, sigma, prediction_type: str = "epsilon"):
    """The data prediction x0 from a network's prediction at a point x_t = alpha x0 + sigma eps.

        "epsilon"       x0 = x_t / alpha - (sigma / alpha) eps    (DDPM, DiT, PixArt)
        "v_prediction"  x0 = alpha x_t - sigma v,  v = alpha eps - sigma x0     (Hunyuan-DiT)
        "flow"          x0 = x_t - sigma v,        v = eps - x0, alpha = 1 - sigma   (SD3)
        "sample"        x0 = the prediction

    alpha, sigma: numbers or float64 tensors broadcasting against x_t. The coefficients are formed in
    float64 and rounded once to x_t's dtype, as the official DDPM code's sqrt(1/a_bar),
    sqrt(1/a_bar - 1) tables. The result is float32 (float64 for float64 inputs)."""
    x_t = x_t.to(torch.promote_types(x_t.dtype, torch.float32))
    prediction = prediction.to(x_t.dtype)
    alpha, sigma = (torch.as_tensor(c, dtype=torch.float64) for c in (alpha, sigma))

    def coef(c):
        return c.to(x_t.dtype).to(x_t.device)
    if prediction_type == "epsilon":
        return coef(1.0 / alpha) * x_t - coef(sigma / alpha) * prediction
    if prediction_type == "v_prediction":
        return coef(alpha) * x_t - coef(sigma) * prediction
    if prediction_type == "flow":
        return x_t - coef(sigma) * prediction
    if prediction_type == "sample":
        return prediction
    raise ValueError(f"unknown prediction_type {prediction_type!r}: one of {', '.join(PREDICTION_TYPES)}")


def predict_x0_from_eps(schedule: Schedule, x_t, t, eps):
    """x_0 = (x_t - sqrt(1 - a_bar_t) eps) / sqrt(a_bar_t) at step t of `schedule` (`predict_x0`)."""
    return predict_x0(eps, x_t, *alpha_sigma(schedule, t, x_t.shape))


def alpha_sigma(schedule: Schedule, t, shape):
    """(sqrt(a_bar_t), sqrt(1 - a_bar_t)) at steps t of `schedule`, float64, (B, 1, 1, ...) for `predict_x0`."""
    abar = schedule.alphas_cumprod
    return _gather64(abar.sqrt(), t, shape), _gather64((1.0 - abar).sqrt(), t, shape)


def p_mean_variance(schedule: Schedule, model_output, x_t, t, *, learn_sigma: bool = True,
                    variance: str = "fixed_small", clip_denoised: bool = False, prediction_type: str = "epsilon"):
    """The model's p(x_{t-1} | x_t): dict(mean, variance, log_variance, pred_x0, eps).

    With `learn_sigma` the output is [eps | v] and the variance is the learned interpolation
    (IDDPM's "learned range"); otherwise `variance` is "fixed_small" (beta~_t) or "fixed_large"
    (beta_t, with beta~_1 at t = 0 as in the official code). `t` indexes `schedule`. The first
    half is eps, or v / x0 (`prediction_type`, see `predict_x0`); "eps" in the result is it as given.
    """
    eps, v = split_output(model_output, x_t, learn_sigma)
    if learn_sigma:
        min_log = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
        max_log = extract(torch.log(schedule.betas), t, x_t.shape)
        frac = (v + 1) / 2                                           # v in [-1, 1] -> [0, 1]
        log_var = frac * max_log + (1 - frac) * min_log
        var = torch.exp(log_var)
    else:
        if variance == "fixed_small":
            var_arr, log_arr = schedule.posterior_variance, schedule.posterior_log_variance_clipped
        elif variance == "fixed_large":
            var_arr = torch.cat([schedule.posterior_variance[1:2], schedule.betas[1:]])
            log_arr = torch.log(var_arr)
        else:
            raise ValueError(f"unknown variance {variance!r}: use fixed_small or fixed_large")
        var, log_var = extract(var_arr, t, x_t.shape), extract(log_arr, t, x_t.shape)
    pred_x0 = predict_x0(eps, x_t, *alpha_sigma(schedule, t, x_t.shape), prediction_type)
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
    mean, _, _ = q_posterior_mean_variance(schedule, pred_x0, x_t, t)
    return {"mean": mean, "variance": var, "log_variance": log_var, "pred_x0": pred_x0, "eps": eps}


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def mean_flat(x):
    """Mean over every dimension but the batch."""
    return x.mean(dim=list(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL( N(mean1, exp(logvar1)) || N(mean2, exp(logvar2)) ), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    """A fast approximation of the standard normal CDF (the one the official code uses)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """log-likelihood of data x in [-1, 1], discretised to 256 bins, under N(means, exp(log_scales)^2)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_probs = torch.where(
        x < -0.999, log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))
    return log_probs


def vb_terms_bpd(schedule: Schedule, model_output, x0, x_t, t, prediction_type: str = "epsilon"):
    """One term of the variational bound in bits per dimension: KL(q || p) for t > 0, the decoder
    NLL for t = 0. Shape (B,)."""
    true_mean, _, true_log_var = q_posterior_mean_variance(schedule, x0, x_t, t)
    out = p_mean_variance(schedule, model_output, x_t, t, learn_sigma=True, prediction_type=prediction_type)
    kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(
        x0, means=out["mean"], log_scales=0.5 * out["log_variance"])) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def v_target(schedule: Schedule, x0, t, noise):
    """The v-prediction target v = sqrt(a_bar_t) eps - sqrt(1 - a_bar_t) x_0 (Salimans & Ho,
    arXiv:2202.00512 §4; `predict_x0`'s "v_prediction" inverts it: x_0 = sqrt(a_bar) x_t - sqrt(1 - a_bar) v)."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0.shape) * noise - extract((1.0 - abar).sqrt(), t, x0.shape) * x0


def training_losses(model_fn, schedule: Schedule, x0, t, noise=None, *, learn_sigma: bool = True,
                    prediction_type: str = "epsilon"):
    """DDPM/IDDPM training loss for one batch: dict(loss, mse, vb), each (B,).

    `model_fn(x_t, t)` returns the prediction, or [prediction | v_var] with `learn_sigma`; the
    prediction is eps ("epsilon", DDPM/DiT/PixArt) or v ("v_prediction", `v_target`). With learned
    sigma the loss is the IDDPM hybrid: mse + vb, where vb sees the prediction detached so it
    trains only the variance.
    """
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"DDPM training predicts 'epsilon' or 'v_prediction', not {prediction_type!r} "
                         "(flow matching: minidit.flow.flow_loss)")
    if noise is None:
        noise = torch.randn_like(x0)
    x_t = q_sample(schedule, x0, t, noise)
    model_output = model_fn(x_t, schedule.timesteps.to(t.device)[t])
    pred, v = split_output(model_output, x0, learn_sigma)
    target = noise if prediction_type == "epsilon" else v_target(schedule, x0, t, noise)
    terms = {"mse": mean_flat((target - pred) ** 2)}
    if learn_sigma:
        frozen = torch.cat([pred.detach(), v], dim=1)
        terms["vb"] = vb_terms_bpd(schedule, frozen, x0, x_t, t, prediction_type)
        terms["loss"] = terms["mse"] + terms["vb"]
    else:
        terms["loss"] = terms["mse"]
    return terms
