"""Flow matching beyond the path itself: training densities, the resolution and dynamic shifts, and
SD3.5's official samplers -- against diffusers, the official sampling loops and hand-derived values.

The official loops. SD3.5's reference code (Stability-AI/sd3.5, `sd3_impls.py`) samples with
`sample_euler` and `sample_dpmpp_2m`, copied from k-diffusion, on the sigmas of
`ModelSamplingDiscreteFlow` and `sd3_infer.py`'s `get_sigmas`. k-diffusion itself is not the oracle
here: `import k_diffusion.sampling` runs the package's `__init__`, which needs torchvision,
scikit-image, clean-fid, CLIP and more (its `utils.py`, imported by `sampling.py`, needs
torchvision). So the loops are written out below, line for line from that sd3.5 source (the
Karras-style denoiser interface: the model is a function of (x, sigma) returning the denoised x0 =
x - sigma v; `official_*` below). They are the oracle's text, not minidit's code.
"""
import math

import pytest
import torch

from minidit.flow import (MODE_SCALE_MAX, DynamicShift, logit_normal_density, mode_map, resolution_shift,
                          shift_sigmas, time_shift, training_sigmas)
from minidit.grid import flow_grid, flow_sigmas
from minidit.samplers import Sampler, dpm_solver_sample, euler_sample, euler_step
from minidit.scheduler_config import sampler_from_scheduler_config

from helpers import FP32, FP32_ELEMENTWISE, assert_parity, require
from helpers.sd3_official import official_denoiser, official_sample_dpmpp_2m, official_sample_euler, official_sigmas

diffusers = require("diffusers")
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift  # noqa: E402
from diffusers.training_utils import compute_density_for_timestep_sampling  # noqa: E402


def wiggly(x, t):
    """A nonlinear stand-in for a velocity network (of x and the timestep 1000 sigma)."""
    t = t.float().reshape(-1, *[1] * (x.dim() - 1))
    return 0.8 * torch.tanh(x) + 0.2 * torch.sin(3 * x + t / 300)



def same_grid(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("timesteps", "alphas", "sigmas"))


def traced(sampler: Sampler, x_T, steps, **kw):
    trace = []
    sampler.run(wiggly, x_T, steps, callback=lambda i, t, x: trace.append(x.clone()), progress=False, **kw)
    return trace


def assert_traces_match(trace, reference, what):
    assert len(trace) == len(reference), f"{what}: {len(trace)} steps, the oracle {len(reference)}"
    for i, (x, x_ref) in enumerate(zip(trace, reference)):
        assert_parity(x, x_ref, tol=FP32, what=f"{what}: after step {i}")


@pytest.mark.parametrize("steps,shift", [(1, 1.0), (10, 1.0), (28, 3.0), (40, 3.0)])
def test_official_grid_is_the_flow_grid_with_alpha_one(steps, shift):
    grid = flow_grid(steps, shift, k_diffusion=True)
    assert_parity(grid.sigmas.float(), official_sigmas(steps, shift), tol=FP32_ELEMENTWISE, what="official sigmas")
    assert torch.equal(grid.alphas, torch.ones(steps + 1, dtype=torch.float64))
    assert torch.equal(grid.sigmas, flow_grid(steps, shift).sigmas)            # the same points as diffusers'
    assert same_grid(Sampler("euler", prediction_type="flow", spacing="flow_k_diffusion", shift=shift).grid(steps), grid)


@pytest.mark.parametrize("steps,shift", [(8, 1.0), (28, 3.0)])
def test_euler_matches_the_official_sample_euler(steps, shift):
    x_T = torch.randn(2, 4, 6, 6)
    reference = []
    official_sample_euler(official_denoiser(wiggly), x_T.clone(), official_sigmas(steps, shift), reference)
    for spacing in ("flow_k_diffusion", "flow"):                               # Euler is the same on both
        trace = traced(Sampler("euler", prediction_type="flow", spacing=spacing, shift=shift), x_T, steps)
        assert_traces_match(trace, reference, f"Euler ({spacing}, shift {shift}) vs sd3.5's sample_euler")


@pytest.mark.parametrize("steps,shift", [(10, 1.0), (40, 3.0)])
def test_dpm_solver_matches_the_official_sample_dpmpp_2m(steps, shift):
    """SD3.5's default sampler (dpmpp_2m, shift 3, 40 steps for SD3.5-large) = minidit's DPM-Solver++(2M)
    on the k-diffusion view of the flow grid (alpha = 1, lambda = -log sigma), step by step."""
    x_T = torch.randn(2, 4, 6, 6)
    reference = []
    official_sample_dpmpp_2m(official_denoiser(wiggly), x_T.clone(), official_sigmas(steps, shift), reference)
    sampler = Sampler("dpm_solver++", prediction_type="flow", spacing="flow_k_diffusion", shift=shift)
    assert_traces_match(traced(sampler, x_T, steps), reference, f"DPM-Solver++ (official, shift {shift})")


def test_the_two_dpm_solver_conventions_by_hand():
    """Same points, same model: the first-order steps agree, the second-order ones do not.

    With D held constant the exact solution of dx/dsigma = (x - D) / sigma is
    x' = (sigma'/sigma) x + (1 - sigma'/sigma) D in both conventions (alpha_t (1 - e^-h) = 1 - sigma'/sigma
    for alpha = 1 - sigma as for alpha = 1). 2M extrapolates D linearly in lambda, and lambda differs:
    -log sigma (official) vs log((1 - sigma)/sigma) (diffusers), which is -inf at sigma = 1, so diffusers'
    second step is still first order (r = inf) and the official one is not."""
    x_T, steps = torch.randn(3, 2, 4, 4), 12
    official = traced(Sampler("dpm_solver++", prediction_type="flow", spacing="flow_k_diffusion", shift=3.0), x_T, steps)
    diffusers_like = traced(Sampler("dpm_solver++", prediction_type="flow", spacing="flow", shift=3.0), x_T, steps)
    s0, s1, s2 = flow_sigmas(steps, 3.0)[:3].tolist()                        # s0 = 1

    def x0_hat(x, sigma):                                                    # x - sigma v
        return x - sigma * wiggly(x, torch.full((len(x),), 1000 * sigma))
    # step 0, by hand: x' = (s1 / s0) x + (1 - s1 / s0) x0_hat, the same in both conventions
    by_hand = s1 * x_T + (1 - s1) * x0_hat(x_T, s0)
    for trace in (official, diffusers_like):
        assert_parity(trace[0], by_hand, tol=FP32_ELEMENTWISE, what="first DPM-Solver++ step vs the formula")
    # step 1: official 2M with r = log(s0/s1) / log(s1/s2); diffusers first order (its r is infinite)
    x1 = official[0]
    D0, D1 = x0_hat(x_T, s0), x0_hat(x1, s1)
    r = math.log(s0 / s1) / math.log(s1 / s2)
    official_by_hand = (s2 / s1) * x1 + (1 - s2 / s1) * ((1 + 1 / (2 * r)) * D1 - 1 / (2 * r) * D0)
    diffusers_by_hand = (s2 / s1) * x1 + (1 - s2 / s1) * D1
    assert_parity(official[1], official_by_hand, tol=FP32, what="official step 1 (second order) by hand")
    assert_parity(diffusers_like[1], diffusers_by_hand, tol=FP32, what="diffusers-convention step 1 by hand")
    assert (official_by_hand - diffusers_by_hand).abs().max() > 10 * FP32           # not a rounding difference


def test_the_official_update_is_minidits_with_alpha_one():
    """k-diffusion's 2M step, x' = (sigma'/sigma) x - (e^-h - 1) D with h = log(sigma / sigma'), is
    minidit's x' = (sigma'/sigma) x - alpha' (e^-h - 1) D, h = lambda' - lambda, once alpha = 1:
    then lambda = log(1 / sigma) = k-diffusion's t. Checked through `dpm_solver_sample` on a grid built
    by hand from the official sigmas."""
    sigmas = official_sigmas(6, 3.0).double()
    grid = flow_grid(6, 3.0, k_diffusion=True)
    assert_parity(grid.lambdas[:-1], -sigmas[:-1].log(), tol=FP32_ELEMENTWISE, what="lambda = -log sigma")
    x_T, reference = torch.randn(2, 3, 4, 4), []
    official_sample_dpmpp_2m(official_denoiser(wiggly), x_T.clone(), official_sigmas(6, 3.0), reference)
    out = dpm_solver_sample(wiggly, x_T, grid, prediction_type="flow", progress=False)
    assert_parity(out, reference[-1], tol=FP32, what="DPM-Solver++ on the alpha = 1 grid")


def test_euler_step_by_hand_and_both_grids_solve_a_point_mass():
    x, v = torch.randn(2, 3), torch.randn(2, 3)
    assert_parity(euler_step(x, v, 0.75, 0.5), x - 0.25 * v, tol=FP32_ELEMENTWISE, what="x + (s' - s) v")
    x_star = torch.tensor([0.5, -1.5]).reshape(1, 2, 1, 1)

    def exact_velocity(x, t):                    # data = one point: v = (x - x*) / sigma, straight lines
        return (x - x_star) / (t.float() / 1000).reshape(-1, 1, 1, 1)
    for sample in (euler_sample, dpm_solver_sample):
        out = sample(exact_velocity, torch.randn(3, 2, 1, 1), flow_grid(5, 3.0, k_diffusion=True),
                     prediction_type="flow", progress=False)
        assert_parity(out, x_star.expand(3, 2, 1, 1), what=f"{sample.__name__}, alpha = 1 grid, point mass")


# --------------------------------------------------------------------------------------------
# Dynamic shifting: diffusers' use_dynamic_shifting, calculate_shift, time_shift
# --------------------------------------------------------------------------------------------

def test_dynamic_shift_mu_by_hand_and_against_calculate_shift():
    d = DynamicShift()                           # 0.5 at 256 tokens, 1.15 at 4096: slope 0.65 / 3840
    assert d.mu(256) == pytest.approx(0.5, abs=1e-12) and d.mu(4096) == pytest.approx(1.15, abs=1e-12)
    assert d.mu(2176) == pytest.approx(0.825, abs=1e-12)                      # the midpoint
    assert d.mu(1024) == pytest.approx(0.5 + 0.65 * 768 / 3840, abs=1e-12)   # 64x64 latent, patch 2: 0.63
    assert d.mu(8192) == pytest.approx(0.5 + 0.65 * 7936 / 3840, abs=1e-12)   # extrapolated, not clamped
    custom = DynamicShift(base_shift=0.3, max_shift=2.0, base_image_seq_len=64, max_image_seq_len=1024)
    for n in (16, 64, 333, 1024, 4096):
        assert custom.mu(n) == pytest.approx(calculate_shift(n, 64, 1024, 0.3, 2.0), rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError, match="positive"):
        d.mu(0)
    with pytest.raises(ValueError, match="time_shift_type"):
        DynamicShift(time_shift_type="cubic")
    with pytest.raises(ValueError, match="max_shift"):
        sampler_from_scheduler_config({"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True,
                                       "max_shift": None})


def test_time_shift_is_the_sd3_shift_and_diffusers():
    # e^mu / (e^mu + (1/t - 1)) = t e^mu / (t e^mu + 1 - t): SD3's shift with s = e^mu; "linear": s = mu
    sched = {kind: diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=kind)
             for kind in ("exponential", "linear")}
    t = torch.linspace(0.001, 1, 50, dtype=torch.float64)
    for mu in (0.5, 0.9, 1.15):
        assert_parity(time_shift(mu, t), shift_sigmas(t, math.exp(mu)), tol=FP32_ELEMENTWISE, what="exp(mu) shift")
        assert_parity(time_shift(mu, t, "linear"), shift_sigmas(t, mu), tol=FP32_ELEMENTWISE, what="linear shift")
        for kind in ("exponential", "linear"):
            assert_parity(time_shift(mu, t, kind), sched[kind].time_shift(mu, 1.0, t), tol=FP32_ELEMENTWISE,
                          what=f"{kind} time_shift vs diffusers")
    with pytest.raises(ValueError, match="mu > 0"):
        time_shift(-0.2, t, "linear")


@pytest.mark.parametrize("kind", ["exponential", "linear"])
@pytest.mark.parametrize("image_seq_len,steps", [(256, 6), (1024, 12), (4096, 28)])
def test_dynamic_shift_euler_matches_diffusers_step_by_step(kind, image_seq_len, steps):
    ref = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=kind, shift=3.0)
    cfg = dict(ref.config, _class_name="FlowMatchEulerDiscreteScheduler")
    sampler = sampler_from_scheduler_config(cfg)
    assert sampler.dynamic_shift == DynamicShift(time_shift_type=kind) and sampler.shift == 1.0
    mu = calculate_shift(image_seq_len, cfg["base_image_seq_len"], cfg["max_image_seq_len"], cfg["base_shift"],
                         cfg["max_shift"])
    ref.set_timesteps(steps, mu=mu)
    grid = sampler.grid(steps, image_seq_len=image_seq_len)
    assert_parity(grid.sigmas.float(), ref.sigmas, tol=FP32_ELEMENTWISE, what="dynamic-shift sigmas vs diffusers")
    assert_parity(grid.timesteps.float(), ref.timesteps, tol=FP32_ELEMENTWISE, scale=1000.0,
                  what="dynamic-shift timesteps vs diffusers")
    x_T = torch.randn(2, 4, 6, 6)
    x, reference = x_T.clone(), []
    for t in ref.timesteps:
        x = ref.step(wiggly(x, t.expand(2)), t, x).prev_sample
        reference.append(x)
    assert_traces_match(traced(sampler, x_T, steps, image_seq_len=image_seq_len), reference,
                        f"Euler, dynamic {kind} shift, {image_seq_len} tokens")


def test_dynamic_shift_needs_the_image_size():
    sampler = Sampler("euler", prediction_type="flow", spacing="flow", dynamic_shift=DynamicShift())
    with pytest.raises(ValueError, match="image_seq_len"):
        sampler.grid(10)
    with pytest.raises(ValueError, match="image_seq_len"):
        sampler.run(wiggly, torch.randn(1, 1, 2, 2), 4, progress=False)
    # a static sampler ignores it, so a pipeline may always pass it
    static = Sampler("euler", prediction_type="flow", spacing="flow", shift=3.0)
    assert same_grid(static.grid(5, image_seq_len=4096), static.grid(5))
    with pytest.raises(ValueError, match="not both"):
        flow_sigmas(5, 3.0, mu=0.7)
    with pytest.raises(ValueError, match="dynamic_shift"):
        Sampler("ddim", dynamic_shift=DynamicShift())
    with pytest.raises(ValueError, match="dynamic_shift"):
        Sampler("euler", prediction_type="flow", spacing="flow", shift=3.0, dynamic_shift=DynamicShift())


def test_resolution_shift_by_hand():
    assert resolution_shift(1024**2, 256**2) == 4.0 and resolution_shift(512**2, 512**2) == 1.0
    # the paper's argument: the standard error (sigma / (1 - sigma)) / sqrt(pixels) of a constant image's value
    # is the same at sigma for n pixels and at the shifted sigma for m pixels
    n, m = 256**2, 1024**2
    sigma = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    shifted = shift_sigmas(sigma, resolution_shift(m, n))
    assert_parity(shifted / (1 - shifted) / math.sqrt(m), sigma / (1 - sigma) / math.sqrt(n), tol=FP32_ELEMENTWISE,
                  scale=1e-2, what="equal certainty at both resolutions")
    with pytest.raises(ValueError, match="positive"):
        resolution_shift(0, 10)


# --------------------------------------------------------------------------------------------
# Where to train: uniform, logit-normal, mode (SD3 §3.1)
# --------------------------------------------------------------------------------------------

def test_training_densities_are_diffusers_draws():
    """Same generator, same numbers: diffusers' compute_density_for_timestep_sampling (its SD3 scripts)."""
    for density, scheme, kw in [("logit_normal", "logit_normal", dict(logit_mean=0.3, logit_std=1.2)),
                                ("mode", "mode", dict(mode_scale=1.29)), ("uniform", "none", {})]:
        ours = training_sigmas(64, density, loc=0.3, scale=1.2, mode_scale=1.29,
                               generator=torch.Generator().manual_seed(7))
        theirs = compute_density_for_timestep_sampling(scheme, 64, generator=torch.Generator().manual_seed(7), **kw)
        assert ours.shape == (64,) and ours.dtype == torch.float32
        assert_parity(ours, theirs, tol=FP32_ELEMENTWISE, what=f"{density} draws vs diffusers")
    with pytest.raises(ValueError, match="logit_normal"):
        training_sigmas(4, "cosmap")


def test_logit_normal_density_mean_and_histogram():
    grid = torch.linspace(1e-6, 1 - 1e-6, 200001, dtype=torch.float64)
    for loc, scale in [(0.0, 1.0), (1.0, 0.5), (-0.5, 1.5)]:
        p = logit_normal_density(grid, loc, scale)
        assert torch.trapezoid(p, grid).item() == pytest.approx(1.0, abs=1e-6)        # a density
        mean = torch.trapezoid(grid * p, grid).item()
        draws = training_sigmas(400_000, loc=loc, scale=scale, generator=torch.Generator().manual_seed(1)).double()
        assert draws.mean().item() == pytest.approx(mean, abs=3e-3)                   # sd/sqrt(n) ~ 4e-4
        cdf = torch.cumulative_trapezoid(p, grid)
        edges = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
        empirical = (draws[None] <= edges[:, None]).double().mean(1)
        expected = cdf[torch.searchsorted(grid, edges) - 1]
        assert (empirical - expected).abs().max().item() < 5e-3, f"CDF off for m={loc}, s={scale}"
    # the defaults m = 0, s = 1: symmetric about 1/2, densest at 1/2, and far below uniform near the ends
    assert logit_normal_density(0.5).item() == pytest.approx(1 / math.sqrt(2 * math.pi) / 0.25, rel=1e-12)
    assert logit_normal_density(torch.tensor([0.01, 0.99])).max().item() < 0.05


def test_mode_sampling_endpoints_monotonicity_and_shape():
    u = torch.linspace(0, 1, 10001, dtype=torch.float64)
    for s in (-1.0, -0.5, 0.0, 0.81, 1.29, MODE_SCALE_MAX):
        f = mode_map(u, s)
        assert f[0].item() == pytest.approx(1.0, abs=1e-12) and f[-1].item() == pytest.approx(0.0, abs=1e-12)
        assert bool((f[1:] <= f[:-1] + 1e-12).all()), f"f_mode not monotone for s = {s}"
    assert_parity(mode_map(u, 0.0), 1 - u, tol=FP32_ELEMENTWISE, what="s = 0 is uniform")
    # slope -1 + s (pi/2 sin(pi u) - 1) at u = 1/2: zero exactly at s = 2/(pi - 2), positive beyond
    assert MODE_SCALE_MAX == pytest.approx(2 / (math.pi - 2))
    with pytest.raises(ValueError, match="monotone"):
        mode_map(u, MODE_SCALE_MAX + 0.01)
    with pytest.raises(ValueError, match="monotone"):
        mode_map(u, -1.01)
    # s > 0 puts more mass in the middle than uniform, and still some at the ends (unlike logit-normal)
    draws = training_sigmas(200_000, "mode", mode_scale=1.29, generator=torch.Generator().manual_seed(3))
    middle = ((draws > 0.25) & (draws < 0.75)).float().mean().item()
    ends = ((draws < 0.02) | (draws > 0.98)).float().mean().item()
    assert middle > 0.6 and ends > 0.005
    assert draws.min() >= 0 and draws.max() <= 1
