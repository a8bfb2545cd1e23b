"""Exercise 5 — one ancestral DDPM step with a learned variance (chapter 02_ddpm).

Sampling runs the chain backwards: from x_t, the network predicts eps (and, for DiT, a number v
per channel that sets the variance), and x_{t-1} is drawn from

    p(x_{t-1} | x_t) = N( mu~_t(x0_pred, x_t),  sigma_t^2 I )
    x0_pred          = (x_t - sqrt(1 - a_bar_t) eps) / sqrt(a_bar_t)
    log sigma_t^2    = f log beta_t + (1 - f) log beta~_t,   f = (v + 1) / 2   ("learned range", IDDPM)

Write the step the way DiT's sampler does it, then check yourself (the grader compares with
diffusers' DDPMScheduler.step as an independent implementation):

    python -m pytest exercises/test_ex05_ddpm_step.py

You MAY use these minidit helpers (they are earlier exercises / the chapter's material):
    extract, predict_x0_from_eps, q_posterior_mean_variance   (minidit.diffusion)
    schedule.betas, schedule.posterior_variance, schedule.posterior_log_variance_clipped
You may NOT call minidit.diffusion.p_mean_variance or minidit.samplers.ddpm_step (the grader
checks): the variance choice, the learned-range interpolation and the step are the exercise.
"""
import torch

from minidit.diffusion import Schedule, extract, predict_x0_from_eps, q_posterior_mean_variance  # noqa: F401

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"ddpm_step": "minidit.samplers:ddpm_step"}


def ddpm_step(schedule: Schedule, i: int, model_output, x_t, noise, *, learn_sigma: bool = True,
              variance: str = "fixed_small", clip_denoised: bool = False):
    """One ancestral step x_t -> x_{t-1} = mean + sigma * noise (no noise at the last step).

    Returns (x_prev, pred_x0).
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ Inputs: x_t, noise (B, C, H, W); model_output (B, 2C, H, W) = [eps | v] when               │
    # │ learn_sigma, else (B, C, H, W) = eps; i is the step index into `schedule`.                 │
    # │ TODO: the docstring's step, in this order:                                                 │
    # │   1. the step index as a (B,) long tensor, for the schedule look-ups                       │
    # │   2. eps (the first C channels) and v (the other C); learn_sigma with a channel count      │
    # │      other than 2C is a ValueError                                                         │
    # │   3. the log-variance log sigma_t^2         -> (B, 1, 1, 1), or (B, C, H, W) if learned    │
    # │        learn_sigma:    f log beta_t + (1 - f) log beta~_t,  f = (v + 1) / 2                │
    # │        "fixed_small":  log beta~_t                                                         │
    # │        "fixed_large":  log beta_t, except log beta~_1 at t = 0 (as the official code)      │
    # │        any other `variance`: ValueError                                                    │
    # │      (log beta~_t is the schedule's clipped table, posterior_log_variance_clipped)         │
    # │   4. pred_x0 from eps, clamped to [-1, 1] if clip_denoised           -> (B, C, H, W)       │
    # │   5. x_prev = the posterior mean mu~_t(pred_x0, x_t) + sigma_t * noise, but NO noise       │
    # │      when i == 0 (the last step returns the mean)                    -> (B, C, H, W)       │
    # │ Return (x_prev, pred_x0). The helpers you may (and may not) use: see the docstring.        │
    # │ Read first: chapters/02_ddpm.ipynb, sections                                               │
    # │   - The posterior and its variance                                                         │
    # │   - Sampling: ancestral DDPM and DDIM, checked against diffusers                           │
    # │   - How the official code differs                                                          │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("ddpm_step")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# ddpm_step
# ---------
#     B, C = x_t.shape[:2]
#     t = torch.full((B,), i, dtype=torch.long, device=x_t.device)                       # (B,)
#     if learn_sigma:
#         if model_output.shape[1] != 2 * C:
#             raise ValueError(f"learn_sigma expects {2 * C} channels, got {model_output.shape[1]}")
#         eps, v = model_output[:, :C], model_output[:, C:]
#         min_log = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)       # (B, 1, 1, 1)
#         max_log = extract(torch.log(schedule.betas), t, x_t.shape)                     # (B, 1, 1, 1)
#         f = (v + 1) / 2                                                                # (B, C, H, W)
#         log_var = f * max_log + (1 - f) * min_log                                      # (B, C, H, W)
#     else:
#         eps = model_output
#         if variance == "fixed_small":
#             log_var = extract(schedule.posterior_log_variance_clipped, t, x_t.shape)
#         elif variance == "fixed_large":
#             var = torch.cat([schedule.posterior_variance[1:2], schedule.betas[1:]])
#             log_var = extract(torch.log(var), t, x_t.shape)
#         else:
#             raise ValueError(f"unknown variance {variance!r}")
#     pred_x0 = predict_x0_from_eps(schedule, x_t, t, eps)
#     if clip_denoised:
#         pred_x0 = pred_x0.clamp(-1, 1)
#     mean, _, _ = q_posterior_mean_variance(schedule, pred_x0, x_t, t)
#     nonzero = 0.0 if i == 0 else 1.0
#     return mean + nonzero * torch.exp(0.5 * log_var) * noise, pred_x0
# Why:
# * every schedule table is indexed by t, one entry per sample: torch.full makes the (B,) index that
#   extract needs (all samples are at the same step during sampling).
# * the true posterior variance of x_{t-1} given x_0 is beta~_t, and beta_t is an upper bound on it;
#   IDDPM lets the network choose per element between the two, and interpolates in LOG space because
#   the two differ by orders of magnitude near t = 0. v is in [-1, 1], so f = (v + 1) / 2 is in [0, 1].
#   max_log and min_log are (B, 1, 1, 1) and f is (B, C, H, W): broadcasting gives a per-element variance.
# * "clipped": beta~_0 is 0 and its log is -inf, so the table repeats beta~_1 at t = 0. "fixed_large"
#   does the same substitution on the variance itself (the official code's torch.cat / np.append).
# * the mean is the mean of q(x_{t-1} | x_t, x_0) with the model's x0 in place of the true one: that
#   is the whole idea of DDPM sampling. exp(0.5 * log_var) is sigma_t. At i == 0 the step produces the
#   final sample, and adding noise there would only blur it, so the mean is returned as it is.
