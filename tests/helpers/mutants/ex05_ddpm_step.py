"""Wrong DDPM ancestral steps (exercise 5)."""
import torch

from helpers.mutants import Mutant
from minidit.diffusion import extract, predict_x0_from_eps, q_posterior_mean_variance


def _step(interpolate="log", f_of_v=lambda v: (v + 1) / 2, swap=False, std=lambda log_var: torch.exp(0.5 * log_var),
          last_noise=False, clip_after_mean=False, check=True):
    def ddpm_step(schedule, i, model_output, x_t, noise, *, learn_sigma=True, variance="fixed_small",
                  clip_denoised=False):
        B, C = x_t.shape[:2]
        t = torch.full((B,), i, dtype=torch.long)
        if learn_sigma:
            if check and model_output.shape[1] != 2 * C:
                raise ValueError("learn_sigma needs 2C channels")
            eps, v = model_output[:, :C], model_output[:, C:2 * C]
            lo = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
            hi = extract(torch.log(schedule.betas), t, x_t.shape)
            if swap:
                lo, hi = hi, lo
            f = f_of_v(v)
            log_var = (f * hi + (1 - f) * lo if interpolate == "log"
                       else torch.log(f * hi.exp() + (1 - f) * lo.exp()))
        else:
            eps = model_output
            if variance == "fixed_small":
                log_var = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
            elif variance == "fixed_large":
                table = torch.cat([schedule.posterior_variance[1:2], schedule.betas[1:]])
                log_var = extract(torch.log(table), t, x_t.shape)
            else:
                raise ValueError(variance)
        pred_x0 = predict_x0_from_eps(schedule, x_t, t, eps)
        if clip_denoised and not clip_after_mean:
            pred_x0 = pred_x0.clamp(-1, 1)
        mean, _, _ = q_posterior_mean_variance(schedule, pred_x0, x_t, t)
        if clip_denoised and clip_after_mean:
            pred_x0 = pred_x0.clamp(-1, 1)
        if i == 0 and not last_noise:
            return mean, pred_x0
        return mean + std(log_var) * noise, pred_x0
    return ddpm_step


MUTANTS = [
    Mutant("variances interpolated, not log-variances", {"ddpm_step": _step(interpolate="variance")},
           "you interpolated the variances"),
    Mutant("f = v", {"ddpm_step": _step(f_of_v=lambda v: v)}, "f = (v + 1) / 2, not v"),
    Mutant("min and max log-variance swapped", {"ddpm_step": _step(swap=True)}, "min_log and max_log are swapped"),
    Mutant("noise scaled by the variance", {"ddpm_step": _step(std=torch.exp)}, "standard deviation is exp(0.5"),
    Mutant("noise at the last step", {"ddpm_step": _step(last_noise=True)},
           "at the last step (i = 0) should equal pred_x0"),
    Mutant("clip after the mean", {"ddpm_step": _step(clip_after_mean=True)}, "the mean must use the clipped x0"),
    Mutant("no ValueError for C channels", {"ddpm_step": _step(check=False)}, "expected a ValueError for ddpm_step"),
]
