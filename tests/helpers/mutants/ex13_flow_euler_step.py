"""Wrong flow-matching sigma grids and Euler steps (exercise 13)."""
import torch

from helpers.mutants import Mutant
from minidit.flow import shift_sigmas


def _sigmas(low="shifted", shift_points=True, to_zero=False, final_zero=True, on_timesteps=False):
    def flow_sigmas(num_steps, shift=1.0, num_train_timesteps=1000):
        T = num_train_timesteps
        if num_steps < 1:
            raise ValueError("num_steps must be at least 1")
        sigma_min = shift_sigmas(1.0 / T, shift) if low == "shifted" else 1.0 / T
        if to_zero:
            return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
        s = torch.linspace(1.0, sigma_min, num_steps, dtype=torch.float64)
        if on_timesteps:                 # the shift applied to t = T * sigma, then back to sigma
            s = shift_sigmas(T * s, shift) / T
        elif shift_points:
            s = shift_sigmas(s, shift)
        return torch.cat([s, s.new_zeros(1)]) if final_zero else s
    return flow_sigmas


def _step(length):
    def euler_step(x, v, sigma, sigma_next):
        return x.float() + float(length(float(sigma), float(sigma_next))) * v.float()
    return euler_step


MUTANTS = [
    Mutant("low end shifted once", {"flow_sigmas": _sigmas(low="plain")}, "shifted only once"),
    Mutant("shift ignored", {"flow_sigmas": _sigmas(low="plain", shift_points=False)}, "the shift is ignored"),
    Mutant("shift applied to the timestep, not sigma", {"flow_sigmas": _sigmas(on_timesteps=True)},
           "apply it to sigma, not to the timestep"),
    Mutant("spaced from 1 to 0", {"flow_sigmas": _sigmas(to_zero=True)}, "evenly spaced from 1 down to 0"),
    Mutant("no final 0", {"flow_sigmas": _sigmas(final_zero=False)}, "append the final 0"),
    Mutant("Euler step backwards", {"euler_step": _step(lambda s, n: s - n)}, "the step goes the wrong way"),
    Mutant("Euler step of length sigma_next", {"euler_step": _step(lambda s, n: n)}, "not sigma_next"),
]
