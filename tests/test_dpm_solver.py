"""DPM-Solver++(2M): step by step against diffusers' DPMSolverMultistepScheduler, plus hand-derived checks."""
import math

import pytest
import torch

from minidit.diffusion import get_beta_schedule, make_schedule
from minidit.grid import discrete_grid, time_uniform_grid, training_timesteps
from minidit.samplers import Sampler, dpm_solver_pp_1_step, dpm_solver_pp_2m_step, dpm_solver_sample, vp_alpha_sigma

from helpers import FP32, FP32_OTHER_KERNEL, assert_parity

ABAR = make_schedule(get_beta_schedule("linear", 1000)).alphas_cumprod     # PixArt's training schedule


def dpm_solver_grid(steps, spacing="linspace"):
    """The grid of diffusers' DPMSolverMultistepScheduler ("linspace") or of the official PixArt DPMS."""
    if spacing == "time_uniform":
        return time_uniform_grid(ABAR, steps)
    return discrete_grid(ABAR, training_timesteps(1000, steps, spacing, multistep=True))


def gaussian_eps(s=0.5, mu=0.3):
    """The exact eps-prediction for data ~ N(mu, s^2): a model with no approximation error."""
    def eps_fn(x, t):
        a2 = ABAR[t.long()].to(torch.float64).reshape(-1, *[1] * (x.dim() - 1))
        a, sg = a2.sqrt(), (1 - a2).sqrt()
        return (sg * (x.double() - a * mu) / (a2 * s**2 + sg**2)).to(x.dtype)
    return eps_fn


def wiggly(x, t):
    """A nonlinear stand-in for a network, so both implementations see varied model outputs."""
    return gaussian_eps()(x, t) + 0.1 * torch.sin(3 * x + t.float().reshape(-1, 1, 1, 1) / 300)


@pytest.mark.parametrize("steps", [5, 20, 25])
def test_grid_matches_diffusers(steps):
    from diffusers import DPMSolverMultistepScheduler
    sched = DPMSolverMultistepScheduler()                # PixArt pipelines' scheduler: all defaults
    sched.set_timesteps(steps)
    grid = dpm_solver_grid(steps)
    assert torch.equal(grid.timesteps.long(), sched.timesteps)
    # diffusers stores VE sigmas sigma/alpha (and 0 at the end)
    torch.testing.assert_close(grid.sigmas / grid.alphas, sched.sigmas.double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [5, 20])
def test_sampler_matches_diffusers_step_by_step(steps):
    from diffusers import DPMSolverMultistepScheduler
    sched = DPMSolverMultistepScheduler()
    sched.set_timesteps(steps)
    x_T = torch.randn(2, 4, 6, 5)
    ours = []
    dpm_solver_sample(wiggly, x_T, dpm_solver_grid(steps), callback=lambda i, t, x: ours.append((t, x.clone())),
                      progress=False)
    x = x_T.clone()
    for i, t in enumerate(sched.timesteps):
        x = sched.step(wiggly(x, t.expand(2)), t, x).prev_sample
        assert torch.equal(ours[i][0], t.expand(2)), f"step {i}: model saw timestep {ours[i][0]}, diffusers {t}"
        assert_parity(ours[i][1], x, tol=FP32_OTHER_KERNEL, what=f"after step {i} of {steps}")


def test_2m_step_matches_diffusers_second_order_update():
    from diffusers import DPMSolverMultistepScheduler
    sched = DPMSolverMultistepScheduler()
    sched.set_timesteps(10)
    x0_prev, x0, x = torch.randn(3, 2, 4, 4)
    sched._step_index = 4                                # diffusers reads sigmas[3], [4], [5]
    ref = sched.multistep_dpm_solver_second_order_update([x0_prev, x0], sample=x)
    lam = torch.log(1 / sched.sigmas[3:6].double())      # VE sigma -> lambda = -log(sigma/alpha)
    assert_parity(dpm_solver_pp_2m_step(x, x0, x0_prev, *lam), ref, tol=FP32, what="2M step vs diffusers")


def test_constant_data_prediction_is_solved_exactly():
    # If x0_theta is constant the ODE solution is x_t = alpha_t x0 + sigma_t eps_hat with a fixed
    # eps_hat = (x_s - alpha_s x0) / sigma_s: both solvers must reproduce it (2M's extrapolation is 0).
    x0 = torch.randn(2, 3, dtype=torch.float64)
    eps_hat = torch.randn(2, 3, dtype=torch.float64)
    lam_prev, lam_s, lam_t = -2.0, -1.2, 0.7
    (a_s, s_s), (a_t, s_t) = vp_alpha_sigma(lam_s), vp_alpha_sigma(lam_t)
    x_s = a_s * x0 + s_s * eps_hat
    expected = a_t * x0 + s_t * eps_hat
    torch.testing.assert_close(dpm_solver_pp_1_step(x_s, x0, lam_s, lam_t), expected)
    torch.testing.assert_close(dpm_solver_pp_2m_step(x_s, x0, x0, lam_prev, lam_s, lam_t), expected)
    torch.testing.assert_close(dpm_solver_pp_1_step(x_s, x0, lam_s, math.inf), x0)   # sigma_t = 0 -> x0
    with pytest.raises(ValueError, match="sigma = 0"):
        dpm_solver_pp_2m_step(x_s, x0, x0, lam_prev, lam_s, math.inf)


def test_vp_alpha_sigma():
    alpha, sigma = vp_alpha_sigma(torch.tensor([-3.0, 0.0, 2.5]))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(torch.log(alpha / sigma), torch.tensor([-3.0, 0.0, 2.5], dtype=torch.float64))


def test_second_order_convergence_on_gaussian_data():
    # Data N(0, s^2): the probability-flow ODE just rescales, x_t / sqrt(alpha_t^2 s^2 + sigma_t^2)
    # is constant, so the exact end point is known. Halving the step should cut the error ~4x.
    s, x_T = 0.5, torch.randn(4, 64, dtype=torch.float64)
    a_T, s_T = ABAR[999].sqrt(), (1 - ABAR[999]).sqrt()
    exact = x_T * s / torch.sqrt(a_T**2 * s**2 + s_T**2)      # ends at sigma = 0
    err = {n: (dpm_solver_sample(gaussian_eps(s, 0.0), x_T, dpm_solver_grid(n), progress=False) - exact).abs().max().item()
           for n in (10, 20, 80, 160)}
    assert err[10] / err[20] > 3.5 and err[80] / err[160] > 3.5, err
    assert err[160] < 1e-3, err


def test_time_uniform_grid_is_the_official_discretisation():
    # 9 steps of 0.111 land exactly on training steps: 999, 888, ..., 111 and the end point step 0.
    grid = dpm_solver_grid(9, "time_uniform")
    torch.testing.assert_close(grid.timesteps, torch.arange(999, 0, -111, dtype=torch.float64))
    steps = torch.arange(999, -1, -111)
    torch.testing.assert_close(grid.alphas**2, ABAR[steps])
    torch.testing.assert_close(grid.sigmas[-1], torch.tensor(1e-4, dtype=torch.float64).sqrt())
    # 20 steps: fractional model times; log(alpha) linear between neighbouring training steps
    grid = dpm_solver_grid(20, "time_uniform")
    t1 = grid.timesteps[1].item()
    assert abs(t1 - (999 - 999 / 20)) < 1e-9
    lo, frac = int(t1), t1 - int(t1)
    log_alpha = 0.5 * torch.log(ABAR)
    expected = (1 - frac) * log_alpha[lo] + frac * log_alpha[lo + 1]
    assert abs(torch.log(grid.alphas[1]).item() - expected.item()) < 1e-12


def test_learned_sigma_channels_are_dropped_and_timesteps_fractional():
    seen = []

    def model_fn(x, t):
        seen.append(t)
        return torch.cat([gaussian_eps()(x, t.round()), torch.full_like(x, 1e6)], dim=1)   # [eps | v]
    out = dpm_solver_sample(model_fn, torch.randn(1, 4, 4, 4), dpm_solver_grid(4, "time_uniform"), learn_sigma=True,
                            progress=False)
    assert out.shape == (1, 4, 4, 4) and out.abs().max() < 10
    assert seen[1].dtype == torch.float32 and seen[0].tolist() == [999.0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="spacing"):
        Sampler("dpm_solver++", spacing="karras")
    with pytest.raises(ValueError, match="num_steps"):
        dpm_solver_grid(1000)
    with pytest.raises(ValueError, match="num_steps"):
        dpm_solver_grid(1000, "time_uniform")
