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
    # ┌───────────────────────────────────────────────────────────────────────────────────────┐
    # │ Inputs: x_t, noise (B, C, H, W); model_output (B, 2C, H, W) = [eps | v] when          │
    # │ learn_sigma, else (B, C, H, W) = eps; i is the step index into `schedule`.            │
    # │ TODO:                                                                                 │
    # │   1. t = torch.full((B,), i, dtype=torch.long)                         -> (B,)        │
    # │   2. split model_output into eps (first C channels) and v (the other C); if           │
    # │      learn_sigma and it does not have 2C channels, raise ValueError                   │
    # │   3. the log-variance, each term gathered with extract(...)            -> (B,1,1,1)   │
    # │        or (B, C, H, W) for the learned range:                                         │
    # │      learn_sigma:   min_log = log beta~_t  (schedule.posterior_log_variance_clipped)  │
    # │                     max_log = log beta_t   (torch.log(schedule.betas))                │
    # │                     log_var = f * max_log + (1 - f) * min_log,  f = (v + 1) / 2       │
    # │      "fixed_small": log_var = log beta~_t   (clipped, as above)                       │
    # │      "fixed_large": variance beta_t, except beta~_1 at t = 0 (as the official code):  │
    # │                     log of torch.cat([posterior_variance[1:2], betas[1:]])            │
    # │      anything else: raise ValueError                                                  │
    # │   4. pred_x0 = predict_x0_from_eps(schedule, x_t, t, eps); clamp to [-1, 1] if        │
    # │      clip_denoised                                                     -> (B,C,H,W)   │
    # │   5. mean, _, _ = q_posterior_mean_variance(schedule, pred_x0, x_t, t)                │
    # │   6. x_prev = mean + exp(0.5 * log_var) * noise, but no noise when i == 0             │
    # │ Return (x_prev, pred_x0).                                                             │
    # └───────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("ddpm_step")
    # *****END OF YOUR CODE*****
