"""Wrong x0 predictions and SD3 shifts (exercise 12)."""
import torch

from helpers.mutants import Mutant
from minidit.diffusion import predict_x0


def _predict_x0(kind, wrong):
    def mutant(prediction, x_t, alpha, sigma, prediction_type="epsilon"):
        if prediction_type == kind:
            alpha, sigma = (torch.as_tensor(c, dtype=torch.float32) for c in (alpha, sigma))
            return wrong(prediction, x_t.float(), alpha, sigma)
        return predict_x0(prediction, x_t, alpha, sigma, prediction_type)
    return mutant


def _no_value_error(prediction, x_t, alpha, sigma, prediction_type="epsilon"):
    if prediction_type not in ("epsilon", "v_prediction", "flow", "sample"):
        return prediction
    return predict_x0(prediction, x_t, alpha, sigma, prediction_type)


def _shift(formula, check=True):
    def shift_sigmas(sigma, shift):
        if check and shift <= 0:
            raise ValueError("shift must be positive")
        return formula(sigma, shift)
    return shift_sigmas


MUTANTS = [
    Mutant("epsilon: no division by alpha", {"predict_x0": _predict_x0("epsilon", lambda e, x, a, s: x - s * e)},
           "divide by alpha"),
    Mutant("v-prediction sign", {"predict_x0": _predict_x0("v_prediction", lambda v, x, a, s: a * x + s * v)},
           "v-prediction sign"),
    Mutant("v treated as the noise", {"predict_x0": _predict_x0("v_prediction", lambda v, x, a, s: (x - s * v) / a)},
           "treats v as the noise"),
    Mutant("flow sign", {"predict_x0": _predict_x0("flow", lambda v, x, a, s: x + s * v)}, "flow sign"),
    Mutant("unknown type not refused", {"predict_x0": _no_value_error}, "expected a ValueError for predict_x0"),
    Mutant("shift without normalisation", {"shift_sigmas": _shift(lambda s, k: k * s)}, "leaves [0, 1]"),
    Mutant("shift the wrong way", {"shift_sigmas": _shift(lambda s, k: s / (k - (k - 1) * s))},
           "divides the noise-to-signal ratio by shift"),
    Mutant("shift <= 0 accepted", {"shift_sigmas": _shift(lambda s, k: k * s / (1 + (k - 1) * s), check=False)},
           "expected a ValueError for shift_sigmas"),
]
