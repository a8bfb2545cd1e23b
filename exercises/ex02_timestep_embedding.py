"""Exercise 2 — the sinusoidal timestep embedding (chapter 01_patches_and_tokens).

A DiT is told "how noisy is x_t" by a vector: the integer timestep t (0..999) is turned into
cosines and sines of t at geometrically spaced frequencies, and an MLP maps that to the model
width. Write the sinusoid part, in the exact layout the released DiT/PixArt/SD3 weights expect,
then check yourself:

    python -m pytest exercises/test_ex02_timestep_embedding.py
"""
import math

import torch

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"timestep_embedding": "minidit.embed:timestep_embedding"}


def timestep_embedding(t, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0):
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim), [cos | sin].

        freq_k = max_period ** (-k / (half - freq_shift)),  k = 0 .. half-1
        emb    = [cos(t * freq), sin(t * freq)]

    `freq_shift=0` is the official DiT/PixArt/SD3 code. diffusers' DiT uses `freq_shift=1`
    (`downscale_freq_shift=1`), which changes the frequencies; see `DiTConfig.timestep_freq_shift`.
    """
    # ┌───────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with half = dim // 2:                                                           │
    # │   1. k      = arange(half) as float32 (on t's device)              -> (half,)         │
    # │   2. freqs  = exp(-ln(max_period) * k / (half - freq_shift))       -> (half,)         │
    # │      (freqs[0] = 1: the first channel pair turns one radian per step)                 │
    # │   3. args   = t[:, None].float() * freqs[None]                     -> (B, half)       │
    # │   4. emb    = cat([cos(args), sin(args)], dim=-1)   COS FIRST      -> (B, 2*half)     │
    # │      (the released weights were trained with this order: swapping cos and sin         │
    # │       gives a different, wrong, model)                                                │
    # │   5. if dim is odd, append one column of zeros                     -> (B, dim)        │
    # │ Hint: t may be an integer tensor; convert it to float before multiplying.             │
    # └───────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("timestep_embedding")
    # *****END OF YOUR CODE*****
