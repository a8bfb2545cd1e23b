"""Wrong tile-blending ramps (exercise 7)."""
import torch

from helpers.mutants import Mutant


def _ramp(rise, fall):
    def blend_ramp(size, left, right):
        x = torch.arange(size, dtype=torch.float32)
        w = torch.ones(size)
        if left > 0:
            w = torch.minimum(w, rise(x, left))
        if right > 0:
            w = torch.minimum(w, fall(x, size, right))
        return w
    return blend_ramp


def _right_fall(x, size, n):
    return (size - x) / (n + 1)


def _right_rise(x, n):
    return (x + 1) / (n + 1)


MUTANTS = [
    Mutant("rising ramp x / left", {"blend_ramp": _ramp(lambda x, n: x / n, _right_fall)},
           "the first pixel gets weight 0"),
    Mutant("rising ramp (x + 1) / left", {"blend_ramp": _ramp(lambda x, n: (x + 1) / n, _right_fall)},
           "divide by left + 1"),
    Mutant("falling ramp off by one", {"blend_ramp": _ramp(_right_rise, lambda x, size, n: (size - 1 - x) / (n + 1))},
           "the falling ramp is reversed or off by one"),
    Mutant("falling ramp (size - x) / right", {"blend_ramp": _ramp(_right_rise, lambda x, size, n: (size - x) / n)},
           "divide by right + 1"),
    Mutant("ramps that do not sum to 1", {"blend_ramp": _ramp(lambda x, n: (x + 1) / n,
                                                               lambda x, size, n: (size - x) / n)},
           "must sum to 1"),
]
