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
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: return a 1-D float64 tensor of num_steps + 1 values; num_steps < 1 is a         │
    # │ ValueError. T = num_train_timesteps, shift(s) = shift * s / (1 + (shift - 1) * s)     │
    # │ (exercise 12's shift_sigmas). Both diffusers and the official code do this:          │
    # │ 1. sigma_max = 1; sigma_min = shift(1 / T): the smallest training sigma, shifted     │
    # │ 2. num_steps points evenly spaced from sigma_max down to sigma_min                   │
    # │    (torch.linspace(..., dtype=torch.float64))                                        │
    # │ 3. shift every point (yes: the low end is shifted twice, in both codes)              │
    # │ 4. append a final 0 (the image itself)       -> (num_steps + 1,), decreasing         │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("flow_sigmas")
    # *****END OF YOUR CODE*****


def euler_step(x, v, sigma, sigma_next):
    """One Euler step of dx/dsigma = v from sigma to sigma_next < sigma."""
    # ┌──────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: x and v are tensors of one shape (B, C, H, W); sigma, sigma_next are numbers    │
    # │ (or 0-d tensors). Follow the velocity for the step's length (it is negative: sigma    │
    # │ goes down). Return a tensor of x's shape.                                             │
    # │ Check yourself: on the straight path of one image x0, v = eps - x0 everywhere, so a   │
    # │ step from (1 - sigma) x0 + sigma eps must land exactly on (1 - s') x0 + s' eps.       │
    # └──────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("euler_step")
    # *****END OF YOUR CODE*****
