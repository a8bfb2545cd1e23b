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
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: with half = dim // 2:                                                                │
    # │   1. the half frequencies freq_k of the docstring, float32, on t's device   -> (half,)     │
    # │      (freq_0 = 1: the first channel pair turns one radian per step)                        │
    # │   2. every timestep times every frequency (an outer product)                -> (B, half)   │
    # │   3. cosines, then sines, side by side: [cos | sin], COS FIRST              -> (B, 2*half) │
    # │      (the released weights were trained with this order: swapping cos and sin              │
    # │       gives a different, wrong, model)                                                     │
    # │   4. if dim is odd, one extra column of zeros at the end                    -> (B, dim)    │
    # │ t may be an integer tensor (or float64): the result is float32.                            │
    # │ Read first: chapters/01_patches_and_tokens.ipynb, section                                  │
    # │   - How noisy? The timestep embedding                                                      │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("timestep_embedding")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# timestep_embedding
# ------------------
#     half = dim // 2
#     k = torch.arange(half, dtype=torch.float32, device=t.device)             # (half,)
#     freqs = torch.exp(-math.log(max_period) * k / (half - freq_shift))       # (half,)
#     args = t[:, None].float() * freqs[None]                                  # (B, half)
#     emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)              # (B, 2*half)
#     if dim % 2:
#         emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)         # (B, dim)
#     return emb
# Why each line:
# * exp(-log(max_period) * k / (half - freq_shift)) is max_period ** (-k / (half - freq_shift)) written
#   the way the official DiT code writes it, so it rounds the same way in float32. The frequencies fall
#   geometrically from 1 (k = 0) towards 1 / max_period: the first pairs tell neighbouring timesteps
#   apart, the last ones change slowly over the whole 0..999 range. With freq_shift = 1 (diffusers' DiT)
#   the last frequency is exactly 1 / max_period; with 0 it stops just above.
# * t[:, None] is (B, 1), freqs[None] is (1, half): broadcasting makes the (B, half) table of t * freq.
#   .float() makes the product float32 whatever t is (a float64 t would otherwise give a float64 result).
# * [cos | sin] as two halves, not interleaved pairs and not [sin | cos]: the MLP after this layer was
#   trained on that layout. Check: at t = 0 every cos is 1 and every sin is 0, so emb = [1 .. 1, 0 .. 0].
# * an odd dim gets one zero column at the end, so that the output has exactly dim columns.
