"""Grader for exercise 11: python -m pytest exercises/test_ex11_dpm_solver_step.py"""
import math

import torch

from exercises._grading import FP32_OTHER_KERNEL, check_close, check_shape, load, require
from minidit.samplers import dpm_solver_pp_2m_step as reference

ex = load("ex11_dpm_solver_step")
LAMBDAS = (-2.3, -1.1, 0.4)                   # lambda_prev < lambda_s < lambda_t


def make_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 3, 5, generator=g) for _ in range(3)]     # x_s, x0_s, x0_prev


def test_output_shape():
    x_s, x0_s, x0_prev = make_inputs()
    check_shape(ex.dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, *LAMBDAS), x_s.shape, "x_t")


def _step(x_s, x0_s, x0_prev, lam_prev, lam_s, lam_t, *, first_order=False, r_inverted=False, plus=False,
          sigmoid_of_lambda=False, sigma_ratio_inverted=False, extrapolate_backwards=False):
    """The 2M step in float64 with Python numbers; the keyword arguments give the usual wrong versions."""
    k = 1 if sigmoid_of_lambda else 2

    def alpha_sigma(lam):
        return math.sqrt(1 / (1 + math.exp(-k * lam))), math.sqrt(1 / (1 + math.exp(k * lam)))
    (_, sigma_s), (alpha_t, sigma_t) = alpha_sigma(lam_s), alpha_sigma(lam_t)
    h = lam_t - lam_s
    r = h / (lam_s - lam_prev) if r_inverted else (lam_s - lam_prev) / h
    c = 1 / (2 * r)
    x_s, x0_s, x0_prev = (t.double() for t in (x_s, x0_s, x0_prev))
    D = x0_s if first_order else (1 - c) * x0_s + c * x0_prev if extrapolate_backwards else (1 + c) * x0_s - c * x0_prev
    ratio = sigma_s / sigma_t if sigma_ratio_inverted else sigma_t / sigma_s
    return ratio * x_s + (1 if plus else -1) * alpha_t * math.expm1(-h) * D


MISTAKES = {"Your step is first order (D = x0_s): the 2M step extrapolates, D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev.":
            {"first_order": True},
            "r is inverted: r = (lambda_s - lambda_prev) / h, the previous step over this one.": {"r_inverted": True},
            "The sign of the last term: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D.": {"plus": True},
            "alpha^2 = sigmoid(2 lambda), sigma^2 = sigmoid(-2 lambda): lambda = log(alpha / sigma) is half the "
            "log-SNR.": {"sigmoid_of_lambda": True},
            "The sigma ratio is inverted: x_s is scaled by sigma_t / sigma_s (< 1, the noise goes down).":
                {"sigma_ratio_inverted": True},
            "The extrapolation goes backwards: D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev.":
                {"extrapolate_backwards": True}}


def test_matches_reference():
    x_s, x0_s, x0_prev = make_inputs()
    check_close(ex.dpm_solver_pp_2m_step(x_s, x0_s, x0_prev, *LAMBDAS),
                reference(x_s, x0_s, x0_prev, *LAMBDAS), "x_t",
                mistakes={hint: _step(x_s, x0_s, x0_prev, *LAMBDAS, **kw) for hint, kw in MISTAKES.items()})


def test_constant_data_prediction_is_exact():
    # Hand-derived: if x0 does not change, the ODE moves x along x_t = alpha_t x0 + sigma_t eps with
    # a fixed eps, and the 2M step (whose extrapolation term vanishes) must land exactly there.
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    lam_prev, lam_s, lam_t = LAMBDAS

    def alpha_sigma(lam):
        return math.sqrt(1 / (1 + math.exp(-2 * lam))), math.sqrt(1 / (1 + math.exp(2 * lam)))
    (a_s, s_s), (a_t, s_t) = alpha_sigma(lam_s), alpha_sigma(lam_t)
    check_close(ex.dpm_solver_pp_2m_step(a_s * x0 + s_s * eps, x0, x0, *LAMBDAS), a_t * x0 + s_t * eps,
                "x_t for a constant x0 prediction (should be alpha_t x0 + sigma_t eps)")


def test_matches_diffusers_scheduler():
    # An independent implementation: two steps of diffusers' DPMSolverMultistepScheduler (PixArt's
    # pipeline scheduler, default config). Its second step is a 2M step.
    DPMSolverMultistepScheduler = require("diffusers", "'diffusers>=0.42'").DPMSolverMultistepScheduler
    sched = DPMSolverMultistepScheduler()
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(2)
    x_T, eps_0, eps_1 = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    t0, t1 = sched.timesteps[:2]
    x_1 = sched.step(eps_0, t0, x_T).prev_sample           # first order (no history yet)
    x_2 = sched.step(eps_1, t1, x_1).prev_sample           # second order
    ve = sched.sigmas[:3].double()                          # diffusers stores sigma / alpha
    alpha, sigma = 1 / torch.sqrt(1 + ve**2), ve / torch.sqrt(1 + ve**2)
    x0_prev = ((x_T - sigma[0] * eps_0) / alpha[0]).float()
    x0_s = ((x_1 - sigma[1] * eps_1) / alpha[1]).float()
    lambdas = [float(-math.log(v)) for v in ve]            # lambda = log(alpha / sigma) = -log(sigma / alpha)
    check_close(ex.dpm_solver_pp_2m_step(x_1, x0_s, x0_prev, *lambdas), x_2,
                "x_t vs diffusers' DPMSolverMultistepScheduler.step", tol=FP32_OTHER_KERNEL)
