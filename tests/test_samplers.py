"""The one sampler interface: grids, prediction types, the scheduler-config reader and flow maths,
step by step against diffusers' schedulers and against hand-derived values."""
import math

import pytest
import torch

from minidit.diffusion import PREDICTION_TYPES, predict_x0, split_output
from minidit.flow import flow_interpolate, flow_loss, shift_sigmas, velocity_target
from minidit.grid import Grid, discrete_grid, flow_grid, training_timesteps
from minidit.samplers import Sampler, ddim_sample, ddpm_sample, dpm_solver_sample, euler_sample
from minidit.scheduler_config import sampler_from_scheduler_config

from helpers import FP32, FP32_ELEMENTWISE, assert_parity, require

diffusers = require("diffusers")


def wiggly(x, t):
    """A nonlinear stand-in for a network: both implementations see varied model outputs."""
    t = t.float().reshape(-1, *[1] * (x.dim() - 1))
    return 0.8 * torch.tanh(x) + 0.2 * torch.sin(3 * x + t / 300)


def config_of(scheduler) -> dict:
    return dict(scheduler.config, _class_name=type(scheduler).__name__)


def run_with_trace(sampler: Sampler, model_fn, x_T, steps, **kw):
    trace = []
    out = sampler.run(model_fn, x_T, steps, callback=lambda i, t, x: trace.append((t.clone(), x.clone())),
                      progress=False, **kw)
    return out, trace


def assert_steps_match(trace, reference, what):
    assert len(trace) == len(reference), f"{what}: {len(trace)} steps, diffusers {len(reference)}"
    for i, ((t, x), (t_ref, x_ref)) in enumerate(zip(trace, reference)):
        torch.testing.assert_close(t.double(), t_ref.double().expand_as(t), rtol=1e-6, atol=1e-4,
                                   msg=f"{what}: step {i} fed timestep {t.tolist()}, diffusers {t_ref}")
        assert_parity(x, x_ref, tol=FP32, what=f"{what}: after step {i}")


# --------------------------------------------------------------------------------------------
# v-prediction (Hunyuan-DiT's objective) against DDPMScheduler / DDIMScheduler / DPMSolverMultistep
# --------------------------------------------------------------------------------------------

HUNYUAN_DDPM = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.03, steps_offset=1,
                    clip_sample=False, prediction_type="v_prediction")


@pytest.mark.parametrize("steps", [4, 10])
def test_ddpm_v_prediction_matches_diffusers_step_by_step(steps):
    ref = diffusers.DDPMScheduler(**HUNYUAN_DDPM)
    sampler = sampler_from_scheduler_config(config_of(ref))
    assert (sampler.name, sampler.prediction_type, sampler.steps_offset) == ("ddpm", "v_prediction", 1)
    ref.set_timesteps(steps)
    x_T = torch.randn(2, 3, 5, 4)
    _, trace = run_with_trace(sampler, wiggly, x_T, steps, generator=torch.Generator().manual_seed(5))
    g, x, expected = torch.Generator().manual_seed(5), x_T.clone(), []
    for t in ref.timesteps:
        x = ref.step(wiggly(x, t.expand(2)), t, x, generator=g).prev_sample
        expected.append((t, x))
    assert_steps_match(trace, expected, f"DDPM v-prediction, {steps} steps")


def test_ddim_and_dpm_solver_v_prediction_match_diffusers():
    x_T = torch.randn(2, 3, 4, 4)
    for ref in (diffusers.DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, prediction_type="v_prediction"),
                diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction")):
        sampler = sampler_from_scheduler_config(config_of(ref))
        ref.set_timesteps(8)
        _, trace = run_with_trace(sampler, wiggly, x_T, 8)
        x, expected = x_T.clone(), []
        for t in ref.timesteps:
            x = ref.step(wiggly(x, t.expand(2)), t, x).prev_sample
            expected.append((t, x))
        assert_steps_match(trace, expected, type(ref).__name__)


def test_v_prediction_recovers_x0_by_hand():
    # v = alpha eps - sigma x0 (Salimans & Ho 2022): x0 = alpha x - sigma v exactly, for alpha^2 + sigma^2 = 1
    x0, eps = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 4, 4, dtype=torch.float64)
    alpha = torch.tensor(0.6, dtype=torch.float64)
    sigma = (1 - alpha**2).sqrt()
    x = alpha * x0 + sigma * eps
    torch.testing.assert_close(predict_x0(alpha * eps - sigma * x0, x, alpha, sigma, "v_prediction"), x0)
    torch.testing.assert_close(predict_x0(eps, x, alpha, sigma, "epsilon"), x0)
    torch.testing.assert_close(predict_x0(x0, x, alpha, sigma, "sample"), x0)
    with pytest.raises(ValueError, match="prediction_type"):
        predict_x0(eps, x, alpha, sigma, "score")


# --------------------------------------------------------------------------------------------
# Rectified flow (SD3): the shifted grid and Euler against FlowMatchEulerDiscreteScheduler
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,shift", [(1, 1.0), (5, 1.0), (28, 3.0), (7, 6.0)])
def test_flow_grid_is_diffusers(steps, shift):
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(steps)
    grid = flow_grid(steps, shift)
    assert_parity(grid.sigmas.float(), ref.sigmas, tol=FP32_ELEMENTWISE, what="flow sigmas vs diffusers")
    assert_parity(grid.timesteps.float(), ref.timesteps, tol=FP32_ELEMENTWISE, what="flow timesteps vs diffusers")
    torch.testing.assert_close(grid.alphas, 1 - grid.sigmas)
    assert grid.sigmas[0] == 1 and grid.sigmas[-1] == 0


@pytest.mark.parametrize("steps,shift", [(6, 1.0), (12, 3.0)])
def test_flow_euler_matches_diffusers_step_by_step(steps, shift):
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sampler = sampler_from_scheduler_config(config_of(ref))
    assert (sampler.name, sampler.prediction_type, sampler.shift) == ("euler", "flow", shift)
    ref.set_timesteps(steps)
    x_T = torch.randn(2, 4, 6, 6)
    _, trace = run_with_trace(sampler, wiggly, x_T, steps)
    x, expected = x_T.clone(), []
    for t in ref.timesteps:
        x = ref.step(wiggly(x, t.expand(2)), t, x).prev_sample
        expected.append((t, x))
    assert_steps_match(trace, expected, f"flow Euler, shift {shift}")
    assert trace[1][0].dtype == torch.float32                      # fractional sigma * 1000


def test_flow_maths_by_hand():
    x0, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sigma = torch.tensor([0.25, 0.9])
    x = flow_interpolate(x0, eps, sigma)
    torch.testing.assert_close(x[0], 0.75 * x0[0] + 0.25 * eps[0])
    v = velocity_target(x0, eps)
    # the path is straight: its derivative in sigma is v, and x0 = x - sigma v
    dx = (flow_interpolate(x0, eps, sigma + 1e-3) - flow_interpolate(x0, eps, sigma - 1e-3)) / 2e-3
    torch.testing.assert_close(dx, v, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(predict_x0(v, x, 1 - sigma.reshape(-1, 1, 1), sigma.reshape(-1, 1, 1), "flow"), x0)
    perfect = flow_loss(lambda x_t, t: v, x0, sigma, eps)
    assert perfect.shape == (2,) and perfect.abs().max() == 0
    seen = []
    flow_loss(lambda x_t, t: seen.append(t) or v, x0, sigma, eps)
    torch.testing.assert_close(seen[0], torch.tensor([250.0, 900.0]))


def test_shift_by_hand():
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(shift_sigmas(s, 1.0), s)
    shifted = shift_sigmas(s, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and bool((shifted[1:-1] > s[1:-1]).all())
    # sigma' / (1 - sigma') = shift * sigma / (1 - sigma): the noise-to-signal ratio scales by `shift`
    inner = slice(1, -1)
    torch.testing.assert_close(shifted[inner] / (1 - shifted[inner]), 3.0 * s[inner] / (1 - s[inner]))
    with pytest.raises(ValueError, match="positive"):
        shift_sigmas(s, 0.0)


def test_euler_recovers_a_point_mass_exactly():
    # data = one point x*: the exact velocity is (x - x*) / sigma and every Euler step stays on the
    # straight line to x*, so the end point is x* for any grid
    x_star = torch.tensor([0.5, -1.5]).reshape(1, 2, 1, 1)
    grid = flow_grid(5, shift=3.0)

    def exact_velocity(x, t):
        return (x - x_star) / (t.float() / 1000).reshape(-1, 1, 1, 1)
    out = euler_sample(exact_velocity, torch.randn(3, 2, 1, 1), grid, progress=False)
    assert_parity(out, x_star.expand(3, 2, 1, 1), what="Euler on a point mass")
    # DPM-Solver++ on the same flow grid (alpha = 1 - sigma) is exact here too (x0 is constant)
    out = dpm_solver_sample(exact_velocity, torch.randn(3, 2, 1, 1), grid, prediction_type="flow", progress=False)
    assert_parity(out, x_star.expand(3, 2, 1, 1), what="DPM-Solver++ on a point mass")


# --------------------------------------------------------------------------------------------
# The interface itself
# --------------------------------------------------------------------------------------------

def test_learned_sigma_is_split_in_one_place_and_mismatches_raise():
    x = torch.randn(2, 4, 3, 3)
    pred, v = split_output(torch.randn(2, 8, 3, 3), x, learn_sigma=True)
    assert pred.shape == v.shape == x.shape
    with pytest.raises(ValueError, match="pass learn_sigma=True"):
        split_output(torch.randn(2, 8, 3, 3), x, learn_sigma=False)
    with pytest.raises(ValueError, match="pass learn_sigma=False"):
        split_output(torch.randn(2, 4, 3, 3), x, learn_sigma=True)
    with pytest.raises(ValueError, match="6 output channels"):
        split_output(torch.randn(2, 6, 3, 3), x, learn_sigma=False)
    # every sampler refuses a learned-sigma output it was not told about (no silent slicing)
    grid = discrete_grid(diffusers.DDPMScheduler().alphas_cumprod.double(), [0, 500, 999])

    def doubled(x_t, t):
        return torch.cat([x_t, x_t], dim=1)
    for sample in (ddpm_sample, ddim_sample, dpm_solver_sample):
        with pytest.raises(ValueError, match="learn_sigma"):
            sample(doubled, x, grid, progress=False)
    with pytest.raises(ValueError, match="learned_range"):
        ddpm_sample(doubled, x, grid, variance="learned_range", progress=False)


def test_grid_round_trip_and_checks():
    abar = diffusers.DDPMScheduler().alphas_cumprod.double()
    grid = discrete_grid(abar, [999, 0, 500])
    assert grid.timesteps.tolist() == [999, 500, 0] and grid.num_steps == 3
    schedule = grid.to_schedule()
    torch.testing.assert_close(schedule.alphas_cumprod, abar[[0, 500, 999]])
    back = Grid.from_schedule(schedule)
    torch.testing.assert_close(back.alphas, grid.alphas)
    assert math.isinf(grid.lambdas[-1].item())
    with pytest.raises(ValueError, match="variance-preserving"):
        flow_grid(4).to_schedule()
    with pytest.raises(ValueError, match="flow grid"):
        euler_sample(wiggly, torch.randn(1, 1, 2, 2), grid, progress=False)
    with pytest.raises(ValueError, match="alphas and sigmas"):
        Grid(grid.timesteps, grid.alphas[:-1], grid.sigmas)
    with pytest.raises(ValueError, match="lie in"):
        discrete_grid(abar, [1000])


@pytest.mark.parametrize("name,cls,spacing", [("ddpm", "DDPMScheduler", "leading"), ("ddim", "DDIMScheduler", "leading"),
                                              ("dpm_solver++", "DPMSolverMultistepScheduler", "linspace")])
@pytest.mark.parametrize("steps", [3, 20, 50])
def test_discrete_grids_are_diffusers_timesteps(name, cls, spacing, steps):
    ref = getattr(diffusers, cls)(**({"clip_sample": False} if cls == "DDIMScheduler" else {}))
    ref.set_timesteps(steps)
    sampler = sampler_from_scheduler_config(config_of(ref))
    assert (sampler.name, sampler.spacing) == (name, spacing)
    assert sampler.grid(steps).timesteps.long().tolist() == ref.timesteps.tolist()


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_dpm_solver_spacings_are_diffusers(spacing):
    ref = diffusers.DPMSolverMultistepScheduler(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    ref.set_timesteps(7)
    assert training_timesteps(1000, 7, spacing, ref.config.steps_offset, multistep=True) == ref.timesteps.flip(0).tolist()


def test_scheduler_config_refuses_what_it_cannot_reproduce():
    cases = [({"_class_name": "DDIMScheduler", "clip_sample": True}, "clip_sample"),
             ({"_class_name": "DDPMScheduler", "thresholding": True}, "thresholding"),
             ({"_class_name": "DDPMScheduler", "prediction_type": "flow"}, "prediction_type"),
             ({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}, "use_karras_sigmas"),
             ({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 3}, "solver_order"),
             ({"_class_name": "FlowMatchEulerDiscreteScheduler", "invert_sigmas": True}, "invert_sigmas"),
             ({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift_terminal": 0.02}, "shift_terminal"),
             ({"_class_name": "EulerDiscreteScheduler"}, "EulerDiscreteScheduler")]
    for cfg, word in cases:
        with pytest.raises(ValueError, match=word):
            sampler_from_scheduler_config(cfg)
    with pytest.raises(ValueError, match="sampler"):
        Sampler("heun")
    assert set(PREDICTION_TYPES) == {"epsilon", "v_prediction", "flow", "sample"}


def test_dpm_solver_on_a_flow_grid_matches_diffusers():
    """DPM-Solver++(2M) needs only alpha and sigma at each point, so it runs on the rectified-flow path
    (alpha = 1 - sigma) unchanged. Oracle: DPMSolverMultistepScheduler with flow sigmas and a flow
    (velocity) prediction, on the same points (its own flow grid, shift 3)."""
    ref = diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    ref.set_timesteps(9)
    sigmas = ref.sigmas.double()
    grid = Grid(ref.timesteps.double(), 1 - sigmas, sigmas)
    x_T = torch.randn(2, 3, 4, 4)
    trace = []
    dpm_solver_sample(wiggly, x_T, grid, prediction_type="flow", progress=False,
                      callback=lambda i, t, x: trace.append((t.clone(), x.clone())))
    x, expected = x_T.clone(), []
    for t in ref.timesteps:
        x = ref.step(wiggly(x, t.expand(2)), t, x).prev_sample
        expected.append((t, x))
    assert_steps_match(trace, expected, "DPM-Solver++ on a flow grid")


def test_one_step_ddpm_is_refused_with_a_reason():
    """IDDPM respacing to 1 step keeps only t = 0: there is no posterior variance between two steps."""
    abar = diffusers.DDPMScheduler().alphas_cumprod.double()
    grid = discrete_grid(abar, [0])
    with pytest.raises(ValueError, match="at least 2 steps"):
        ddpm_sample(wiggly, torch.randn(1, 1, 2, 2), grid, progress=False)
    out = ddim_sample(wiggly, torch.randn(1, 1, 2, 2), grid, progress=False)       # DDIM: one step is fine
    assert torch.isfinite(out).all()
