"""Exercise 4 — the forward process q(x_t | x_0) (chapter 02_ddpm).

Training a diffusion model needs x_t for a random t in one shot, not by adding noise t times:

    x_t = sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps,     a_bar_t = prod_{s <= t} (1 - beta_s)

Write it with the official numerics (every schedule quantity in float64, cast to float32 only
when it is gathered for the batch), then check yourself:

    python -m pytest exercises/test_ex04_q_sample.py
"""
import torch

from minidit.diffusion import Schedule, extract  # noqa: F401  (you may use both)

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"q_sample": "minidit.diffusion:q_sample"}


def q_sample(schedule: Schedule, x0, t, noise):
    """x_t = sqrt(a_bar_t) x_0 + sqrt(1 - a_bar_t) eps."""
    # ┌───────────────────────────────────────────────────────────────────────────────────────┐
    # │ Inputs: x0 and noise (B, C, H, W) float32; t (B,) long, one step index per sample.    │
    # │ schedule.alphas_cumprod is a float64 tensor (S,) of a_bar.                            │
    # │ TODO:                                                                                 │
    # │   1. in float64, the whole table: sqrt(a_bar) and sqrt(1 - a_bar)     -> (S,) each    │
    # │   2. pick each sample's entry and shape it to broadcast:              -> (B, 1, 1, 1) │
    # │      extract(table, t, x0.shape) does both and casts to float32                       │
    # │   3. return sqrt_abar * x0 + sqrt_one_minus_abar * noise              -> (B, C, H, W) │
    # │ Why float64? For t = 0, 1 - a_bar_0 = beta_0 = 1e-4: computing 1 - a_bar in float32   │
    # │ keeps only ~4 of float32's ~7 significant digits. Cast AFTER the subtraction & sqrt.  │
    # └───────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("q_sample")
    # *****END OF YOUR CODE*****
