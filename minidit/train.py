"""Training: what one DDPM training step computes.

DiT trains by drawing, for each image of a batch,

    t     ~ Uniform{0, ..., T-1}          which noise level this image is trained on
    eps   ~ N(0, I)                       the noise the network must find again
    drop  ~ Bernoulli(p_uncond)           replace the label by the null class (classifier-free guidance
                                          needs one network that also knows "no label")

and minimising, on x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps,

    mse = mean over pixels of (eps - eps_theta(x_t, t, y or null))^2
    loss = mse (+ vb, the VLB term that trains the learned variance; IDDPM's hybrid loss)

`ddpm_training_loss` is that step, written for a model with DiT's signature. It draws t, eps and
the dropout mask from one generator, in that order, so a seeded run is reproducible; the model
is told which labels to drop (`force_drop_ids`, the official LabelEmbedder's argument) instead of
drawing its own. The optimizer step around it stays in the caller's loop (see
`scripts/train_toy.py` and chapter 03), where it can be read; the full training loop (every objective,
accumulation, checkpointing, buckets, resume, torchrun) is `minidit/training/`.
"""
from __future__ import annotations

import torch

from minidit.diffusion import Schedule, training_losses


def ddpm_training_loss(model, schedule: Schedule, x0, y, *, p_uncond: float = 0.1, learn_sigma: bool = True,
                       generator: torch.Generator | None = None) -> dict:
    """One DDPM training step's loss for a batch x0 (B, C, H, W) with labels y (B,).

    `model(x_t, t, y, force_drop_ids=...)` returns eps, or [eps | v] (B, 2C, H, W) with `learn_sigma`;
    t is fed as the schedule's training timestep (`schedule.timesteps[t]`). Returns per-sample (B,)
    terms: loss, mse (and vb with `learn_sigma`), plus the draws t (B,) and drop (B,) bool.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond is a probability, got {p_uncond}")
    B = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (B,), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    drop = torch.rand(B, generator=generator, device=x0.device) < p_uncond

    def model_fn(x_t, timesteps):
        return model(x_t, timesteps, y, force_drop_ids=drop.long())

    terms = training_losses(model_fn, schedule, x0, t, noise, learn_sigma=learn_sigma)
    return {**terms, "t": t, "drop": drop}
