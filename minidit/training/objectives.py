"""What a training step minimises: DDPM (eps / v, learned sigma with IDDPM's hybrid loss) or flow matching.

Both objectives are thin: the maths is the samplers' own (`minidit/diffusion.py`: `q_sample`,
`training_losses`, `v_target`, the VLB term; `minidit/flow.py`: `training_sigmas`, `flow_loss`), so the
network is trained on exactly the quantities the samplers later read back.

    DDPM   t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps
           loss = |eps - eps_theta|^2              "epsilon"       (DiT, PixArt)
                  |v - v_theta|^2, v = sqrt(a_bar) eps - sqrt(1 - a_bar) x_0   "v_prediction" (Hunyuan-DiT)
                  + L_vlb (bits/dim, prediction detached)   with learned sigma (IDDPM hybrid, DiT/PixArt)
    flow   sigma ~ logit-normal (SD3) | uniform | mode, x_sigma = (1 - sigma) x_0 + sigma eps
           loss = |(eps - x_0) - v_theta(x_sigma, 1000 sigma)|^2

Random draws, per sample. Each sample's draws (t or sigma, eps, and the caption/label dropout
coin) come from its own generator, seeded by (run seed, optimizer step, the sample's position in
the step's global batch) — `sample_generator`. So a step's numbers do not depend on how its global
batch is split: over k accumulated micro-batches, or over N processes. That is what makes "2
processes of batch B = 1 process of batch 2B" and "k micro-batches = one batch of k x" hold
to float noise, and a resumed run draw what the uninterrupted one would have.

Glossary (paper symbol | code name)
  t | t (schedule index)   eps | noise   sigma | sigma (flow noise level)   v | target of "v_prediction"
Shape legend: B batch, C channels, H W sample size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from minidit.diffusion import Schedule, get_beta_schedule, make_schedule, training_losses
from minidit.flow import TRAINING_DENSITIES, flow_loss, training_sigmas

OBJECTIVES = ("epsilon", "v_prediction", "flow")


def sample_generator(seed: int, step: int, position: int) -> torch.Generator:
    """The generator of one sample's draws: a function of (seed, step, position in the global batch) only."""
    key = (seed * 1_000_003 + step) * 1_000_033 + position
    return torch.Generator().manual_seed(key % (2**63 - 1))


@dataclass(frozen=True)
class DDPMObjective:
    """DDPM / IDDPM on `schedule`; `prediction_type` "epsilon" or "v_prediction"; `learn_sigma`: the
    model's output is [prediction | v_var] and the loss is the hybrid mse + vb."""
    schedule: Schedule
    prediction_type: str = "epsilon"
    learn_sigma: bool = True

    def draw(self, sample_shape, generator: torch.Generator) -> dict:
        """One sample's t (1,) and eps (1, *sample_shape)."""
        t = torch.randint(0, self.schedule.num_steps, (1,), generator=generator)
        return {"t": t, "noise": torch.randn((1, *sample_shape), generator=generator)}

    def __call__(self, model_fn, x0, draws: dict) -> dict:
        """Per-sample terms (B,): loss, mse (and vb with learned sigma). `model_fn(x_t, timestep)`."""
        t, noise = draws["t"].to(x0.device), draws["noise"].to(x0.device, x0.dtype)
        return training_losses(model_fn, self.schedule, x0, t, noise, learn_sigma=self.learn_sigma,
                               prediction_type=self.prediction_type)


@dataclass(frozen=True)
class FlowObjective:
    """Rectified-flow matching (SD3 §3.1): sigma from `density`, the model fed 1000 sigma."""
    density: str = "logit_normal"
    loc: float = 0.0
    scale: float = 1.0
    mode_scale: float = 1.29
    num_train_timesteps: int = 1000

    def draw(self, sample_shape, generator: torch.Generator) -> dict:
        sigma = training_sigmas(1, self.density, loc=self.loc, scale=self.scale, mode_scale=self.mode_scale,
                                generator=generator)
        return {"sigma": sigma, "noise": torch.randn((1, *sample_shape), generator=generator)}

    def __call__(self, model_fn, x0, draws: dict) -> dict:
        sigma, noise = draws["sigma"].to(x0.device, x0.dtype), draws["noise"].to(x0.device, x0.dtype)
        return {"loss": flow_loss(model_fn, x0, sigma, noise, self.num_train_timesteps)}


def make_objective(name: str, *, learn_sigma: bool = True, beta_schedule: str = "linear", num_timesteps: int = 1000,
                   density: str = "logit_normal"):
    """"epsilon" | "v_prediction" (DDPM on `beta_schedule`) | "flow" (`density`: one of flow.TRAINING_DENSITIES)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}: one of {', '.join(OBJECTIVES)}")
    if name == "flow":
        if learn_sigma:
            raise ValueError("flow matching predicts a velocity only: build the model with learn_sigma=False")
        if density not in TRAINING_DENSITIES:
            raise ValueError(f"unknown flow density {density!r}: one of {', '.join(TRAINING_DENSITIES)}")
        return FlowObjective(density)
    return DDPMObjective(make_schedule(get_beta_schedule(beta_schedule, num_timesteps)), name, learn_sigma)


def draw_batch(objective, sample_shape, seed: int, step: int, positions, p_uncond: float) -> dict:
    """The draws of the samples at `positions` of step `step`'s global batch, stacked (B, ...), plus
    "drop" (B,) bool: whose label / caption is replaced by the null one (for classifier-free guidance)."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond is a probability, got {p_uncond}")
    per_sample = []
    for position in positions:
        g = sample_generator(seed, step, int(position))
        d = objective.draw(sample_shape, g)
        d["drop"] = torch.rand(1, generator=g) < p_uncond
        per_sample.append(d)
    return {k: torch.cat([d[k] for d in per_sample]) for k in per_sample[0]}
