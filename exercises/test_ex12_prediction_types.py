"""Grader for exercise 12: python -m pytest exercises/test_ex12_prediction_types.py"""
import pytest
import torch

from exercises._grading import (FP32_ELEMENTWISE, FP32_OTHER_KERNEL, check_close, check_raises, check_shape,
                               load, require)
from minidit.diffusion import predict_x0 as reference_predict_x0
from minidit.flow import shift_sigmas as reference_shift

ex = load("ex12_prediction_types")
TYPES = ("epsilon", "v_prediction", "flow", "sample")


def a_point(seed=0, flow=False):
    """x0, eps and a per-sample (alpha, sigma) of a VP point, or of a flow point (alpha = 1 - sigma)."""
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.97]).reshape(3, 1, 1, 1)
    alpha = 1 - sigma if flow else (1 - sigma**2).sqrt()
    return x0, eps, alpha, sigma


def test_shapes():
    x0, eps, alpha, sigma = a_point()
    for kind in TYPES:
        check_shape(ex.predict_x0(eps, alpha * x0 + sigma * eps, alpha, sigma, kind), x0.shape, f"x0 ({kind})")
    check_shape(ex.shift_sigmas(torch.linspace(0, 1, 7), 3.0), (7,), "shifted sigmas")


@pytest.mark.parametrize("kind", TYPES)
def test_every_prediction_gives_back_x0(kind):
    # hand-derived: build x_t from a known x0 and eps, give the network's exact answer, expect x0
    x0, eps, alpha, sigma = a_point(flow=kind == "flow")
    x_t = alpha * x0 + sigma * eps
    exact = {"epsilon": eps, "v_prediction": alpha * eps - sigma * x0, "flow": eps - x0, "sample": x0}[kind]
    out = exact
    mistakes = {
        "epsilon": {"Divide by alpha: x0 = (x_t - sigma eps) / alpha.": x_t - sigma * out,
                    "Sign: x0 = (x_t - sigma eps) / alpha, minus the noise.": (x_t + sigma * out) / alpha},
        "v_prediction": {"v-prediction sign: x0 = alpha x_t - sigma v (from v = alpha eps - sigma x0 and "
                         "alpha^2 + sigma^2 = 1).": alpha * x_t + sigma * out,
                         "v-prediction: x0 = alpha x_t - sigma v; (x_t - sigma v) / alpha treats v as the noise.":
                             (x_t - sigma * out) / alpha},
        "flow": {"Flow sign: x0 = x_t - sigma v (v = eps - x0 points from the data to the noise).": x_t + sigma * out,
                 "Flow: v is scaled by sigma, x0 = x_t - sigma v.": x_t - out},
        "sample": {"With \"sample\" the network predicts x0 itself: return the prediction.": x_t},
    }[kind]
    check_close(ex.predict_x0(exact, x_t, alpha, sigma, kind), x0, f"x0 from the exact {kind} prediction",
                tol=FP32_ELEMENTWISE * 10, mistakes=mistakes)


def test_matches_minidit_with_numbers_and_tensors():
    x0, eps, alpha, sigma = a_point(1)
    x_t, out = alpha * x0 + sigma * eps, torch.randn(3, 2, 4, 4)
    for kind in TYPES:
        check_close(ex.predict_x0(out, x_t, alpha, sigma, kind), reference_predict_x0(out, x_t, alpha, sigma, kind),
                    f"x0 ({kind}, per-sample alpha and sigma)")
        check_close(ex.predict_x0(out, x_t, 0.6, 0.8, kind), reference_predict_x0(out, x_t, 0.6, 0.8, kind),
                    f"x0 ({kind}, alpha and sigma as numbers)")


def test_unknown_prediction_type_is_refused():
    x0, eps, alpha, sigma = a_point()
    check_raises(ValueError, lambda: ex.predict_x0(eps, x0, alpha, sigma, "score"),
                 'predict_x0(..., prediction_type="score"), an unknown type')


def test_epsilon_and_v_match_diffusers_ddpm_scheduler():
    # an independent implementation: DDPMScheduler.step's pred_original_sample at t = 600
    diffusers = require("diffusers", "diffusers")
    x_t, out = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    for kind in ("epsilon", "v_prediction"):
        sched = diffusers.DDPMScheduler(prediction_type=kind, clip_sample=False)
        sched.set_timesteps(10)
        t = int(sched.timesteps[4])
        expected = sched.step(out, t, x_t).pred_original_sample
        abar = sched.alphas_cumprod[t].double()
        check_close(ex.predict_x0(out, x_t, abar.sqrt(), (1 - abar).sqrt(), kind), expected,
                    f"x0 ({kind}) vs diffusers' DDPMScheduler", tol=FP32_OTHER_KERNEL)


def test_shift_by_hand_and_against_diffusers():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    check_close(ex.shift_sigmas(s, 1.0), s, "shift 1 (must change nothing)", tol=FP32_ELEMENTWISE)
    shifted = ex.shift_sigmas(s, 3.0)
    check_close(shifted[[0, -1]], torch.tensor([0.0, 1.0], dtype=torch.float64), "the ends 0 and 1 (fixed points)",
                tol=FP32_ELEMENTWISE, mistakes={"sigma' = shift * sigma leaves [0, 1]: solve the ratio equation, "
                                                "sigma' = shift sigma / (1 + (shift - 1) sigma).":
                                                torch.tensor([0.0, 3.0], dtype=torch.float64)})
    inner = s[1:-1]
    check_close(shifted[1:-1] / (1 - shifted[1:-1]), 3.0 * inner / (1 - inner),
                "noise-to-signal ratio sigma'/(1 - sigma') (should be 3 x sigma/(1 - sigma))", tol=FP32_ELEMENTWISE,
                mistakes={"Your shift divides the noise-to-signal ratio by shift; it multiplies it (a shift > 1 "
                          "moves the sigmas towards noise).": inner / (1 - inner) / 3.0})
    check_raises(ValueError, lambda: ex.shift_sigmas(s, 0.0), "shift_sigmas(sigma, shift=0)")
    diffusers = require("diffusers", "diffusers")
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)       # its 1000 training sigmas, shifted
    plain = torch.linspace(1, 1000, 1000).flip(0) / 1000
    check_close(ex.shift_sigmas(plain, 3.0), sched.sigmas, "vs diffusers' FlowMatchEulerDiscreteScheduler(shift=3)",
                tol=FP32_ELEMENTWISE)
    check_close(ex.shift_sigmas(plain, 3.0), reference_shift(plain, 3.0), "vs minidit", tol=FP32_ELEMENTWISE)
