"""Wrong forward processes q(x_t | x_0) (exercise 4)."""

from helpers.mutants import Mutant
from minidit.diffusion import extract


def _q_sample(signal, noise_level, index=lambda schedule, t: t):
    """x_t = signal(schedule)[t] x0 + noise_level(schedule)[t] eps, tables in float64 unless the mutant casts."""
    def q_sample(schedule, x0, t, noise):
        i = index(schedule, t)
        return extract(signal(schedule), i, x0.shape) * x0 + extract(noise_level(schedule), i, x0.shape) * noise
    return q_sample


def _abar(s):
    return s.alphas_cumprod


MUTANTS = [
    Mutant("no square roots", {"q_sample": _q_sample(_abar, lambda s: 1 - _abar(s))}, "square roots are missing"),
    Mutant("float32 schedule", {"q_sample": _q_sample(lambda s: _abar(s).float().sqrt(),
                                                      lambda s: (1 - _abar(s).float()).sqrt())},
           "compute 1 - a_bar in float64"),
    Mutant("alpha_t instead of a_bar_t",
           {"q_sample": _q_sample(lambda s: (1 - s.betas).sqrt(), lambda s: s.betas.sqrt())},
           "the cumulative product"),
    Mutant("a_bar of the step before", {"q_sample": _q_sample(lambda s: s.alphas_cumprod_prev.sqrt(),
                                                              lambda s: (1 - s.alphas_cumprod_prev).sqrt())},
           "a_bar of the step before"),
    Mutant("coefficients swapped", {"q_sample": _q_sample(lambda s: (1 - _abar(s)).sqrt(), lambda s: _abar(s).sqrt())},
           "coefficients are swapped"),
    Mutant("respaced schedule indexed by its timesteps", {"q_sample": _q_sample(
        lambda s: _abar(s).sqrt(), lambda s: (1 - _abar(s)).sqrt(), index=lambda s, t: s.timesteps[t])},
        "index it with t directly"),
]
