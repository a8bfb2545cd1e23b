"""Grader for exercise 5: python -m pytest exercises/test_ex05_ddpm_step.py

The independent oracle is diffusers' `DDPMScheduler.step` (variance_type="learned_range",
clip_sample=False) on the same inputs and the same noise.
"""
import inspect
import math

import pytest
import torch

from exercises._grading import FP32_OTHER_KERNEL, check_close, check_raises, check_shape, load, require
from minidit.diffusion import get_beta_schedule, make_schedule, respace, space_timesteps
from minidit.samplers import ddpm_step as reference_ddpm_step

ex = load("ex05_ddpm_step")

SHAPE = (2, 3, 4, 5)                      # B, C, H, W
LINEAR = make_schedule(get_beta_schedule("linear", 1000))


def _inputs(seed, learn_sigma=True):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(SHAPE, generator=g)
    eps = torch.randn(SHAPE, generator=g)
    v = torch.rand(SHAPE, generator=g) * 2 - 1                       # the variance output lies in [-1, 1]
    return x_t, (torch.cat([eps, v], dim=1) if learn_sigma else eps)


def _diffusers(variance_type, timesteps=None):
    DDPMScheduler = require("diffusers", "'diffusers>=0.42'").DDPMScheduler
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                              variance_type=variance_type, clip_sample=False, prediction_type="epsilon")
    if timesteps is not None:
        scheduler.set_timesteps(timesteps=sorted(timesteps, reverse=True))
    return scheduler


def test_output_shapes():
    x_t, out = _inputs(0)
    result = ex.ddpm_step(LINEAR, 500, out, x_t, torch.randn(SHAPE))
    assert isinstance(result, tuple) and len(result) == 2, "ddpm_step must return (x_prev, pred_x0)"
    check_shape(result[0], SHAPE, "x_prev")
    check_shape(result[1], SHAPE, "pred_x0")


def test_hand_made_schedule_learned_range():
    # betas (0.1, 0.2, 0.5): a_bar = (0.9, 0.72, 0.36). Step i = 2 with eps = 0 and noise = 1:
    #   pred_x0 = x_t / 0.6, mean = coef1 * pred_x0 + coef2 * x_t,
    #   beta_2 = 0.5, beta~_2 = 0.5 * (1 - 0.72) / (1 - 0.36) = 0.21875,
    #   v = +1 -> sigma^2 = beta_2,  v = -1 -> beta~_2,  v = 0 -> sqrt(beta_2 * beta~_2) (geometric mean).
    schedule = make_schedule(torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64))
    x_t = torch.tensor([0.3, -1.2, 2.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    v = torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    out = torch.cat([torch.zeros(3, 1, 2, 2), v], dim=1)
    coef1, coef2 = 0.5 * math.sqrt(0.72) / 0.64, 0.28 * math.sqrt(0.5) / 0.64
    big, small = 0.5, 0.21875

    def x_prev_for(variances, std=math.sqrt):       # noise = 1: x_prev = mean + std(variance)
        return torch.stack([torch.full((1, 2, 2), coef1 * xi / 0.6 + coef2 * xi + std(var))
                            for xi, var in zip([0.3, -1.2, 2.0], variances)])
    expected = x_prev_for([big, small, math.sqrt(big * small)])
    mistakes = {
        "You interpolated the variances: the learned range interpolates the LOG-variances, log_var = f * log "
        "beta_t + (1 - f) * log beta~_t (v = 0 gives the geometric mean).": x_prev_for([big, small, (big + small) / 2]),
        "f = (v + 1) / 2, not v: it maps the network's v in [-1, 1] to [0, 1].":
            x_prev_for([big, small**2 / big, small]),
        "min_log and max_log are swapped: v = +1 gives beta_t (the upper bound), v = -1 beta~_t.":
            x_prev_for([small, big, math.sqrt(big * small)]),
        "The noise is scaled by the variance: its standard deviation is exp(0.5 * log_var).":
            x_prev_for([big, small, math.sqrt(big * small)], std=lambda var: var),
    }
    x_prev, pred_x0 = ex.ddpm_step(schedule, 2, out, x_t, torch.ones(3, 1, 2, 2))
    check_close(pred_x0, x_t / 0.6, "pred_x0 with eps = 0 (should be x_t / sqrt(a_bar_2) = x_t / 0.6)")
    check_close(x_prev, expected, "x_prev for v = (+1, -1, 0) on betas (0.1, 0.2, 0.5) at i = 2", mistakes=mistakes)


def test_last_step_adds_no_noise():
    # At i = 0 the posterior mean is x0_pred itself (coef1 = beta_0 / (1 - a_bar_0) = 1, coef2 = 0) and
    # no noise is added, however large the noise tensor is.
    schedule = make_schedule(torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64))
    x_t, out = _inputs(1)
    x_prev, pred_x0 = ex.ddpm_step(schedule, 0, out, x_t, torch.full(SHAPE, 1000.0))
    check_close(x_prev, pred_x0, "x_prev at the last step (i = 0) should equal pred_x0")


def test_clip_denoised():
    # x_t = 5 with eps = 0 gives x0_pred = 5 / sqrt(a_bar) > 1: clipping must clamp it to 1 before the mean.
    schedule = make_schedule(torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64))
    x_t = torch.full((1, 1, 2, 2), 5.0)
    out = torch.zeros(1, 2, 2, 2)
    x_prev, pred_x0 = ex.ddpm_step(schedule, 2, out, x_t, torch.zeros_like(x_t), clip_denoised=True)
    check_close(pred_x0, torch.ones_like(x_t), "pred_x0 with clip_denoised=True")
    coef1, coef2 = 0.5 * math.sqrt(0.72) / 0.64, 0.28 * math.sqrt(0.5) / 0.64
    check_close(x_prev, torch.full_like(x_t, coef1 * 1.0 + coef2 * 5.0), "x_prev with clip_denoised=True "
                "(noise = 0): the mean must use the clipped x0")


def test_rejects_wrong_channel_count():
    x_t, eps = _inputs(2, learn_sigma=False)
    check_raises(ValueError, lambda: ex.ddpm_step(LINEAR, 10, eps, x_t, torch.randn(SHAPE), learn_sigma=True),
                 "ddpm_step(learn_sigma=True) given C channels instead of 2C")


# The official code and diffusers differ at t = 0 only: the official log-variance there is log beta~_1
# (beta~_0 = 0 has no log), diffusers clamps beta~_0 to 1e-20 (log = -46). No noise is added at t = 0, so
# x_{t-1} does not change, but the learned-range log-variance (used by the VLB loss) does. Compare at t > 0.
@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_matches_diffusers_learned_range(t):
    x_t, out = _inputs(10 + t)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t))
    expected = _diffusers("learned_range").step(out, t, x_t, generator=torch.Generator().manual_seed(t))
    x_prev, pred_x0 = ex.ddpm_step(LINEAR, t, out, x_t, noise)
    check_close(pred_x0, expected.pred_original_sample, f"pred_x0 at t = {t} vs diffusers", tol=FP32_OTHER_KERNEL)
    check_close(x_prev, expected.prev_sample, f"x_prev at t = {t} vs diffusers (learned_range)",
                tol=FP32_OTHER_KERNEL)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_matches_diffusers_fixed_variance(variance):
    t = 300
    x_t, eps = _inputs(3, learn_sigma=False)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    expected = _diffusers(variance).step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
    x_prev, _ = ex.ddpm_step(LINEAR, t, eps, x_t, noise, learn_sigma=False, variance=variance)
    check_close(x_prev, expected.prev_sample, f"x_prev at t = {t} vs diffusers ({variance})",
                tol=FP32_OTHER_KERNEL)


def test_matches_diffusers_respaced():
    # DiT samples with 250 of the 1000 steps. Respacing makes new betas, beta'_i = 1 - a_bar[t_i] / a_bar[t_{i-1}];
    # diffusers does the same when given the kept timesteps. Step index i of the short chain is timestep use[i].
    use = space_timesteps(1000, "25")
    short = respace(LINEAR, use)
    scheduler = _diffusers("learned_range", timesteps=use)
    for i in (24, 12, 1):
        x_t, out = _inputs(20 + i)
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(i))
        expected = scheduler.step(out, use[i], x_t, generator=torch.Generator().manual_seed(i))
        x_prev, _ = ex.ddpm_step(short, i, out, x_t, noise)
        check_close(x_prev, expected.prev_sample, f"respaced step i = {i} (timestep {use[i]}) vs diffusers",
                    tol=FP32_OTHER_KERNEL)


def test_matches_minidit():
    use = space_timesteps(1000, "50")
    for schedule in (LINEAR, respace(LINEAR, use)):
        for i in (0, 1, schedule.num_steps // 2, schedule.num_steps - 1):
            for learn_sigma, variance, clip in ((True, "fixed_small", False), (True, "fixed_small", True),
                                                (False, "fixed_small", False), (False, "fixed_large", True)):
                x_t, out = _inputs(100 + i, learn_sigma)
                noise = torch.randn(SHAPE)
                kw = dict(learn_sigma=learn_sigma, variance=variance, clip_denoised=clip)
                got = ex.ddpm_step(schedule, i, out, x_t, noise, **kw)
                want = reference_ddpm_step(schedule, i, out, x_t, noise, **kw)
                what = f"step {i} of {schedule.num_steps} ({kw})"
                check_close(got[1], want[1], f"pred_x0 at {what} vs minidit")
                check_close(got[0], want[0], f"x_prev at {what} vs minidit")
    if ex.ddpm_step.__module__ == "exercises.ex05_ddpm_step":       # grading the student's code
        source = inspect.getsource(ex.ddpm_step)
        for forbidden in ("p_mean_variance", "samplers"):
            assert forbidden not in source, f"write the step yourself: ddpm_step must not use {forbidden}"
