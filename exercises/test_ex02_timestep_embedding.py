"""Grader for exercise 2: python -m pytest exercises/test_ex02_timestep_embedding.py"""
import math

import torch

from exercises._grading import check_close, check_shape, load
from minidit.embed import timestep_embedding as reference_timestep_embedding

ex = load("ex02_timestep_embedding")


def _mistakes(t, dim, max_period=10000.0, freq_shift=0.0):
    """What the usual wrong solutions output for these inputs: {hint naming the mistake: values}."""
    t, half = torch.as_tensor(t, dtype=torch.float64), dim // 2
    k = torch.arange(half, dtype=torch.float64)

    def emb(denominator, layout="cos_sin"):
        args = t[:, None] * max_period ** (-k / denominator)
        cos, sin = torch.cos(args), torch.sin(args)
        out = {"cos_sin": lambda: torch.cat([cos, sin], -1), "sin_cos": lambda: torch.cat([sin, cos], -1),
               "pairs": lambda: torch.stack([cos, sin], -1).flatten(1)}[layout]()
        return torch.cat([out, torch.zeros(len(t), dim % 2, dtype=out.dtype)], -1)
    right = half - freq_shift
    found = {"You put sin first: the official layout is [cos | sin].": emb(right, "sin_cos"),
             "Your cos and sin are interleaved (cos, sin, cos, sin, ...): the layout is all the cosines, "
             "then all the sines, [cos | sin].": emb(right, "pairs"),
             "The frequency exponent is divided by dim: it is -k / (half - freq_shift), half = dim // 2.": emb(dim)}
    if freq_shift:
        found["freq_shift is ignored: the exponent's denominator is half - freq_shift."] = emb(half)
    elif half > 1:
        found["The frequency exponent is divided by half - 1 (diffusers' downscale_freq_shift=1): with "
              "freq_shift = 0 it is -k / half."] = emb(half - 1)
    return found


def test_shape_and_dtype():
    emb = ex.timestep_embedding(torch.tensor([0, 10, 999]), 8)
    check_shape(emb, (3, 8), "timestep_embedding(t of shape (3,), dim=8)")
    assert emb.dtype == torch.float32, f"the embedding should be float32 (also for integer t), got {emb.dtype}"


def test_t_zero_is_ones_then_zeros():
    # cos(0) = 1, sin(0) = 0: with cos first, t = 0 embeds to [1, 1, 1, 1, 0, 0, 0, 0].
    emb = ex.timestep_embedding(torch.tensor([0]), 8)
    expected = torch.tensor([[1.0, 1, 1, 1, 0, 0, 0, 0]])
    check_shape(emb, expected.shape, "timestep_embedding(t=[0], dim=8)")
    if torch.allclose(emb, expected.flip(-1)):
        raise AssertionError("got [0, 0, 0, 0, 1, 1, 1, 1] for t = 0: you put sin first; "
                             "the official layout is [cos | sin]")
    check_close(emb, expected, "timestep_embedding(t=[0], dim=8)", mistakes=_mistakes([0.0], 8))


def test_hand_derived_values():
    # dim = 4 -> half = 2, freqs = 10000^(-k/2) = [1, 0.01]; t = 3 and t = 250.5 (fractional).
    t = torch.tensor([3.0, 250.5])
    expected = torch.tensor([[math.cos(a * f) for f in (1.0, 0.01)] + [math.sin(a * f) for f in (1.0, 0.01)]
                             for a in (3.0, 250.5)])
    check_close(ex.timestep_embedding(t, 4), expected, "timestep_embedding(t=[3, 250.5], dim=4)",
                mistakes=_mistakes(t, 4))


def test_max_period():
    # max_period = 100, dim = 6 -> freqs = 100^(-k/3) = [1, 100^(-1/3), 100^(-2/3)].
    freqs = [100.0 ** (-k / 3) for k in range(3)]
    expected = torch.tensor([[math.cos(7 * f) for f in freqs] + [math.sin(7 * f) for f in freqs]])
    check_close(ex.timestep_embedding(torch.tensor([7]), 6, max_period=100.0), expected,
                "timestep_embedding(t=[7], dim=6, max_period=100)", mistakes=_mistakes([7.0], 6, max_period=100.0))


def test_odd_dim_is_zero_padded():
    t = torch.tensor([1, 500])
    emb = ex.timestep_embedding(t, 7)
    check_shape(emb, (2, 7), "timestep_embedding(t, dim=7)")
    assert torch.all(emb[:, -1] == 0), "for an odd dim the last column must be zeros"
    freqs = [10000.0 ** (-k / 3) for k in range(3)]
    expected = torch.tensor([[math.cos(a * f) for f in freqs] + [math.sin(a * f) for f in freqs] + [0.0]
                             for a in (1.0, 500.0)])
    check_close(emb, expected, "timestep_embedding(t=[1, 500], dim=7)", mistakes=_mistakes([1.0, 500.0], 7))


def test_freq_shift_as_in_diffusers_dit():
    # freq_shift = 1 divides the exponent by (half - 1): dim = 6 -> freqs = 10000^(-k/2) = [1, 0.01, 1e-4],
    # while the official freq_shift = 0 gives 10000^(-k/3).
    expected = torch.tensor([[math.cos(40 * f) for f in (1.0, 1e-2, 1e-4)]
                             + [math.sin(40 * f) for f in (1.0, 1e-2, 1e-4)]])
    emb = ex.timestep_embedding(torch.tensor([40]), 6, freq_shift=1.0)
    check_close(emb, expected, "timestep_embedding(t=[40], dim=6, freq_shift=1)",
                mistakes=_mistakes([40.0], 6, freq_shift=1.0))


def test_matches_minidit_at_dit_size():
    # The size the DiT family uses: 256 channels, integer timesteps 0..999 and fractional ones.
    t = torch.cat([torch.arange(0, 1000, 37), torch.tensor([0.25, 999.75])])
    check_close(ex.timestep_embedding(t, 256), reference_timestep_embedding(t, 256),
                "timestep_embedding(t, 256) vs minidit")
    check_close(ex.timestep_embedding(t, 33, freq_shift=1.0), reference_timestep_embedding(t, 33, freq_shift=1.0),
                "timestep_embedding(t, 33, freq_shift=1) vs minidit")
