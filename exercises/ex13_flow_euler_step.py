"""Exercise 13 — SD3's sampler: the shifted flow grid and one Euler step (chapter 07_flow_matching).

A rectified-flow model (SD3, SD3.5) predicts the velocity v = eps - x0 of the straight path
x_sigma = (1 - sigma) x0 + sigma eps. Sampling solves dx/dsigma = v from sigma = 1 (pure noise) to
sigma = 0 (the image). SD3's default sampler (diffusers' FlowMatchEulerDiscreteScheduler, and the
official `sample_euler`) takes Euler steps on a grid of sigmas that its shift moves towards high
noise. Write the grid and the step, then check:

    python -m pytest exercises/test_ex13_flow_euler_step.py
"""
import torch

# The minidit functions this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"flow_sigmas": "minidit.grid:flow_sigmas", "euler_step": "minidit.samplers:euler_step"}


def flow_sigmas(num_steps: int, shift: float = 1.0, num_train_timesteps: int = 1000):
    """The num_steps + 1 noise levels of SD3's Euler sampler, from sigma = 1 down to 0.

    The model is evaluated at the first num_steps of them (and fed the timestep 1000 sigma)."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: return a 1-D float64 tensor of num_steps + 1 values, decreasing from 1 to 0;         │
    # │ num_steps < 1 is a ValueError. T = num_train_timesteps, and shift(s) is exercise 12's      │
    # │ shift_sigmas: shift * s / (1 + (shift - 1) * s). What diffusers and the official code do:  │
    # │   1. the range: from sigma_max = 1 down to sigma_min = shift(1 / T), the smallest          │
    # │      training sigma, already shifted                                                       │
    # │   2. num_steps evenly spaced points over that range, in float64   -> (num_steps,)          │
    # │   3. shift every point (yes: the low end is shifted twice, in both codes)                  │
    # │   4. append a final 0 (the image itself)                          -> (num_steps + 1,)      │
    # │ Read first: chapters/07_flow_matching.ipynb, section                                       │
    # │   - Where to sample: the shift                                                             │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("flow_sigmas")
    # *****END OF YOUR CODE*****


def euler_step(x, v, sigma, sigma_next):
    """One Euler step of dx/dsigma = v from sigma to sigma_next < sigma."""
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x and v are tensors of one shape (B, C, H, W); sigma, sigma_next are numbers         │
    # │ (or 0-d tensors). Follow the velocity for the step's length (it is negative: sigma         │
    # │ goes down). Return a tensor of x's shape.                                                  │
    # │ Check yourself: on the straight path of one image x0, v = eps - x0 everywhere, so a        │
    # │ step from (1 - sigma) x0 + sigma eps must land exactly on (1 - s') x0 + s' eps.            │
    # │ Read first: chapters/07_flow_matching.ipynb, sections                                      │
    # │   - Straight and curved paths                                                              │
    # │   - Solvers on the flow: Euler and DPM-Solver++                                            │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("euler_step")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# flow_sigmas
# -----------
#     if num_steps < 1:
#         raise ValueError(f"num_steps must be at least 1, got {num_steps}")
#     def shift_(s):
#         return shift * s / (1 + (shift - 1) * s)
#     points = torch.linspace(1.0, shift_(1.0 / num_train_timesteps), num_steps, dtype=torch.float64)
#     return torch.cat([shift_(points), torch.zeros(1, dtype=torch.float64)])
# Why: the model was trained on sigma = t / T for t = 1 .. T, so 1 / T is the least noisy point it knows;
# both diffusers' FlowMatchEulerDiscreteScheduler and SD3's official sampler space their steps from 1
# down to that point (taken from their table of training sigmas, which is already shifted) and then
# shift the whole grid. The double shift at the low end is a quirk both codes share; the grader follows
# them, so that your grid is the one the released models were sampled with. The final 0 is not a model call:
# it is where the last Euler step lands.
#
# euler_step
# ----------
#     return x + (sigma_next - sigma) * v
# Why: dx/dsigma = v, so one Euler step over the interval sigma -> sigma_next adds (sigma_next - sigma) v.
# sigma_next < sigma, so the factor is negative: the step goes against v = eps - x0, i.e. away from the
# noise and towards the image. On a straight path v is the same at every sigma, so Euler is exact there:
# (1 - sigma) x0 + sigma eps + (s' - sigma)(eps - x0) = (1 - s') x0 + s' eps.
