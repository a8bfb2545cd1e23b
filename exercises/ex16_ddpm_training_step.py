"""Exercise 16 — one DDPM training step: sample t, drop labels, the loss (chapter 03_dit_adaln_zero).

Every DiT, PixArt and Hunyuan-DiT checkpoint was trained by repeating one step millions of times:

    t    ~ Uniform{0, ..., T-1}        one noise level per image
    eps  ~ N(0, I)                     the noise the network must find again
    drop ~ Bernoulli(p_uncond)         the label is replaced by the null class (for guidance)
    x_t  = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps
    loss = mean over pixels of (eps - eps_theta(x_t, t, y))^2   (+ vb, the learned-variance term)

Write the step; chapter 03 then trains its DiT with *your* function (through `mine(...)`, see
exercises/use.py). Check yourself with

    python -m pytest exercises/test_ex16_ddpm_training_step.py

The grader checks your draws, your loss against one it derives from the formulas above, that the
variance term does not train eps, and then trains a tiny DiT on the digits for a few hundred
seeded steps with your function and with minidit's: your loss must fall like the reference's.

You MAY use: minidit.diffusion.q_sample (or your exercise 4), split_output, mean_flat, vb_terms_bpd.
You may NOT call minidit.diffusion.training_losses or minidit.train.ddpm_training_loss.
"""
import torch

from minidit.diffusion import Schedule, mean_flat, q_sample, split_output, vb_terms_bpd  # noqa: F401

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"ddpm_training_loss": "minidit.train:ddpm_training_loss"}


def ddpm_training_loss(model, schedule: Schedule, x0, y, *, p_uncond: float = 0.1, learn_sigma: bool = True,
                       generator=None) -> dict:
    """The loss of one DDPM training step for images x0 (B, C, H, W) with class labels y (B,).

    `model(x_t, t_model, y, force_drop_ids=drop.long())` returns eps (B, C, H, W), or [eps | v]
    (B, 2C, H, W) with `learn_sigma`; `force_drop_ids` tells it which labels to replace by the
    null class (1 = drop), so the model does not drop labels on its own.
    Returns a dict of per-sample (B,) tensors: "loss", "mse", ("vb" with learn_sigma), and the
    draws "t" (int64) and "drop" (bool).
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x0 (B, C, H, W) images, y (B,) labels.                                                   │
    # │   1. draw from `generator`, IN THIS ORDER (the grader replays it):                             │
    # │        t     (B,)  int64 in [0, schedule.num_steps)                                            │
    # │        noise (B, C, H, W), standard normal, x0's dtype                                         │
    # │        drop  (B,)  bool, True with probability p_uncond                                        │
    # │   2. x_t: the forward process at t                                  -> (B, C, H, W)            │
    # │   3. the model sees the *training* timestep schedule.timesteps[t] (a respaced                  │
    # │      schedule's step i stands for another t) and the drop mask       -> model output           │
    # │   4. mse: per sample, the mean over (C, H, W) of the squared eps error  -> (B,)                │
    # │   5. with learn_sigma: vb = vb_terms_bpd(...) such that it trains only v, not eps;             │
    # │      loss = mse + vb (without learn_sigma: loss = mse)                 -> (B,)                 │
    # │ Bad input: p_uncond outside [0, 1] -> ValueError.                                              │
    # │ Read first: chapters/02_ddpm.ipynb, sections                                                   │
    # │   - The forward process                                                                        │
    # │   - The losses                                                                                 │
    # │ and chapters/03_dit_adaln_zero.ipynb, section                                                  │
    # │   - Train it yourself, and compare with the shipped run                                        │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.                   │
    # └────────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("ddpm_training_loss")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# ddpm_training_loss
# ------------------
#     if not 0.0 <= p_uncond <= 1.0:
#         raise ValueError(f"p_uncond is a probability, got {p_uncond}")
#     B = x0.shape[0]
#     t = torch.randint(0, schedule.num_steps, (B,), generator=generator)
#     noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
#     drop = torch.rand(B, generator=generator) < p_uncond
#     x_t = q_sample(schedule, x0, t, noise)
#     out = model(x_t, schedule.timesteps[t], y, force_drop_ids=drop.long())
#     eps, v = split_output(out, x0, learn_sigma)
#     mse = mean_flat((noise - eps) ** 2)
#     if not learn_sigma:
#         return {"loss": mse, "mse": mse, "t": t, "drop": drop}
#     vb = vb_terms_bpd(schedule, torch.cat([eps.detach(), v], dim=1), x0, x_t, t)
#     return {"loss": mse + vb, "mse": mse, "vb": vb, "t": t, "drop": drop}
# Why:
# * randint's upper bound is exclusive: t = num_steps would index past the schedule. One generator,
#   drawn in a fixed order, makes a seeded run repeat exactly (the grader replays it).
# * "< p_uncond" drops a fraction p_uncond of the labels; "> p_uncond" would keep only that fraction
#   and train an almost unconditional model. The model is told which labels to drop, so it does not
#   also drop some of its own (DiT's label embedder does that in train mode otherwise).
# * q_sample indexes the schedule with t itself: sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) noise. The model,
#   though, was trained on the original timesteps, so it is fed schedule.timesteps[t] (the same as t
#   for a full schedule).
# * The target is the noise you drew, and only the first C channels are eps (split_output); the mean
#   over every axis but the batch keeps the loss's scale independent of the image size.
# * IDDPM's hybrid loss: the VLB term sees eps detached, so its gradient trains only the variance v;
#   the mse alone trains eps.
