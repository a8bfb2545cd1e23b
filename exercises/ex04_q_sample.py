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
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ Inputs: x0 and noise (B, C, H, W) float32; t (B,) long, one step index per sample.         │
    # │ schedule.alphas_cumprod is a float64 tensor (S,) of a_bar.                                 │
    # │ TODO: the docstring's formula, with                                                        │
    # │   1. the two coefficient tables sqrt(a_bar) and sqrt(1 - a_bar), over all S steps,         │
    # │      in float64                                                       -> (S,) each         │
    # │   2. each sample's entry of each table, shaped to broadcast against x0 and cast            │
    # │      to float32 (`extract`, imported above: read its docstring)       -> (B, 1, 1, 1)      │
    # │   3. combined with x0 and noise                                       -> (B, C, H, W)      │
    # │ Why float64? For t = 0, 1 - a_bar_0 = beta_0 = 1e-4: computing 1 - a_bar in float32        │
    # │ keeps only ~4 of float32's ~7 significant digits. Cast AFTER the subtraction & sqrt.       │
    # │ Read first: chapters/02_ddpm.ipynb, sections                                               │
    # │   - The forward process                                                                    │
    # │   - Why float64?                                                                           │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("q_sample")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# q_sample
# --------
#     abar = schedule.alphas_cumprod                                            # (S,) float64
#     sqrt_abar = extract(abar.sqrt(), t, x0.shape)                             # (B, 1, 1, 1) float32
#     sqrt_one_minus_abar = extract((1.0 - abar).sqrt(), t, x0.shape)           # (B, 1, 1, 1) float32
#     return sqrt_abar * x0 + sqrt_one_minus_abar * noise                       # (B, C, H, W)
# Why:
# * the whole (S,) table is computed first, in float64, and only then gathered: that is the official
#   code's order (numpy float64 arrays, `_extract_into_tensor`), and it is what keeps 1 - a_bar exact near
#   t = 0, where a_bar is 0.9999 and float32 would cancel most of its digits.
# * extract(table, t, shape) does table[t] (one entry per sample), casts to float32 and reshapes to
#   (B, 1, 1, 1), so that each sample's coefficient multiplies all its C*H*W values. Without the
#   reshape a (B,) tensor would broadcast against the LAST axis (W), not the batch.
# * x_t is a weighted sum of the clean sample and the noise, with a_bar + (1 - a_bar) = 1: the variance
#   stays 1 for unit-variance x0 (a "variance-preserving" process).
