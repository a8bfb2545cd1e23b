"""Grader for exercise 13: python -m pytest exercises/test_ex13_flow_euler_step.py"""
import pytest
import torch

from exercises._grading import (FP32_ELEMENTWISE, FP32_OTHER_KERNEL, check_close, check_raises, check_shape,
                               load, require)
from minidit.grid import flow_sigmas as reference_sigmas
from minidit.samplers import euler_step as reference_step

ex = load("ex13_flow_euler_step")


def a_point(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)       # x0, eps


def test_shapes():
    sigmas = ex.flow_sigmas(10, 3.0)
    if isinstance(sigmas, torch.Tensor) and tuple(sigmas.shape) == (10,):
        raise AssertionError("flow_sigmas(10, 3.0) has 10 values, expected 11: append the final 0 (the image).")
    check_shape(sigmas, (11,), "flow_sigmas(10, 3.0)")
    check_shape(ex.flow_sigmas(1), (2,), "flow_sigmas(1)")
    x, v = a_point()
    check_shape(ex.euler_step(x, v, 0.8, 0.6), x.shape, "euler_step(x, v, 0.8, 0.6)")


def test_flow_sigmas_by_hand():
    # no shift, 4 steps: evenly from 1 to 1/1000, then 0
    check_close(ex.flow_sigmas(4, 1.0), torch.tensor([1.0, 1 - 0.999 / 3, 1 - 2 * 0.999 / 3, 0.001, 0.0],
                                                     dtype=torch.float64),
                "flow_sigmas(4, shift=1)", tol=FP32_ELEMENTWISE,
                mistakes={"Your sigmas are evenly spaced from 1 down to 0: space num_steps of them from 1 to "
                          "sigma_min = shift(1/T), then append the 0.": torch.linspace(1, 0, 5, dtype=torch.float64)})
    # shift 3: the ends are 1 and shift(shift(1/1000)) (shifted twice), then 0
    once = 3 * 0.001 / (1 + 2 * 0.001)
    twice = 3 * once / (1 + 2 * once)
    got = ex.flow_sigmas(5, 3.0)
    if got[0] != 1:
        raise AssertionError(f"flow_sigmas(5, 3.0) starts at {float(got[0]):.4g}, not at sigma = 1 (pure noise): "
                             "the shift maps sigma in [0, 1] to [0, 1]; apply it to sigma, not to the timestep "
                             "1000 * sigma.")

    def ends(low):                      # the first, last-but-one and last sigma
        return torch.tensor([1.0, low, 0.0], dtype=torch.float64)
    check_close(got[[0, -2, -1]], ends(twice),
                "the first, last-but-one and last sigma with shift 3 (1, shift(shift(1/1000)), 0)",
                tol=FP32_ELEMENTWISE, scale=1e-2,
                mistakes={"The shift is ignored: shift every sigma, sigma' = shift sigma / (1 + (shift - 1) sigma).":
                              ends(0.001),
                          "The low end is shifted only once: sigma_min is already shift(1/T), and then every point "
                          "is shifted again (so shift(shift(1/T)), as in both codes).": ends(once)})
    assert bool((got[1:] < got[:-1]).all()), f"sigmas must decrease from 1 to 0, got {got.tolist()}"
    check_raises(ValueError, lambda: ex.flow_sigmas(0), "flow_sigmas(0): num_steps < 1")


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (7, 1.0), (20, 3.0), (28, 6.0)])
def test_flow_sigmas_match_minidit_and_diffusers(steps, shift):
    check_close(ex.flow_sigmas(steps, shift), reference_sigmas(steps, shift), f"flow_sigmas({steps}, {shift}) vs minidit",
                tol=FP32_ELEMENTWISE)
    diffusers = require("diffusers", "diffusers")
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    check_close(ex.flow_sigmas(steps, shift).float(), sched.sigmas,
                f"flow_sigmas({steps}, {shift}) vs diffusers' FlowMatchEulerDiscreteScheduler", tol=FP32_ELEMENTWISE)


def test_euler_step_by_hand():
    x, v = a_point(1)
    check_close(ex.euler_step(x, v, 0.75, 0.5), x - 0.25 * v, "euler_step(x, v, 0.75, 0.5) (should be x - 0.25 v)",
                tol=FP32_ELEMENTWISE,
                mistakes={"The step goes the wrong way: x + (sigma_next - sigma) v, and sigma_next - sigma is "
                          "negative.": x + 0.25 * v,
                          "The step length is sigma_next - sigma, not sigma_next.": x + 0.5 * v,
                          "The step length is sigma_next - sigma, not sigma.": x - 0.75 * v})
    # one image: the velocity eps - x0 is constant along its straight path, so Euler is exact
    x0, eps = a_point(2)
    for sigma, sigma_next in [(1.0, 0.7), (0.4, 0.0), (0.93, 0.9)]:
        check_close(ex.euler_step((1 - sigma) * x0 + sigma * eps, eps - x0, sigma, sigma_next),
                    (1 - sigma_next) * x0 + sigma_next * eps,
                    f"a step from sigma {sigma} to {sigma_next} on a straight path (should land on it)",
                    tol=FP32_ELEMENTWISE * 10)
    check_close(ex.euler_step(x, v, torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)),
                reference_step(x, v, 0.6, 0.2), "euler_step with 0-d tensor sigmas vs minidit", tol=FP32_ELEMENTWISE)


def test_a_whole_run_matches_diffusers():
    # your grid and your step, 12 steps with shift 3, against FlowMatchEulerDiscreteScheduler.step
    diffusers = require("diffusers", "diffusers")
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(12)
    x_ref = x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3))

    def velocity(x, timestep):                                   # a stand-in for the network
        return torch.tanh(x) + 0.3 * torch.sin(x * float(timestep) / 400)
    sigmas = ex.flow_sigmas(12, 3.0)
    for i, t in enumerate(sched.timesteps):
        x = ex.euler_step(x, velocity(x, 1000 * sigmas[i]), sigmas[i], sigmas[i + 1])
        x_ref = sched.step(velocity(x_ref, t), t, x_ref).prev_sample
    check_close(x, x_ref, "the sample after 12 Euler steps vs diffusers", tol=FP32_OTHER_KERNEL)
