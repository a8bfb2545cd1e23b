"""Tier 1: DDPM maths and samplers against hand-derived values and diffusers' schedulers."""
import math

import pytest
import torch
from torch.testing import assert_close

from minidit.diffusion import (discretized_gaussian_log_likelihood, get_beta_schedule, make_schedule,
                               normal_kl, p_mean_variance, q_posterior_mean_variance, q_sample, respace,
                               space_timesteps, training_losses)
from minidit.grid import Grid
from minidit.samplers import ddim_sample, ddim_step, ddpm_sample, ddpm_step

from helpers import FP32, FP32_OTHER_KERNEL, assert_parity

LINEAR = make_schedule(get_beta_schedule("linear"))


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_beta_schedules_match_diffusers(name):
    from diffusers import DDPMScheduler
    kw = {"beta_start": 0.00085, "beta_end": 0.012} if name == "scaled_linear" else {}
    ref = DDPMScheduler(beta_schedule=name, **kw).betas          # diffusers builds them in float32
    ours = get_beta_schedule(name)
    assert ours.dtype == torch.float64
    assert_parity(ours.float(), ref, tol=FP32, scale=ref.abs().max(), what=f"{name} betas vs diffusers")


def test_linear_schedule_hand_values():
    betas = get_beta_schedule("linear")
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert betas[1].item() == pytest.approx(1e-4 + (0.02 - 1e-4) / 999)
    abar = LINEAR.alphas_cumprod
    assert abar[2].item() == pytest.approx(((1 - betas[0]) * (1 - betas[1]) * (1 - betas[2])).item(), rel=1e-12)


def test_q_sample_hand_derived():
    sched = make_schedule(torch.tensor([0.19, 0.5, 0.75], dtype=torch.float64))   # a_bar = 0.81, 0.405, 0.10125
    x0, noise = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 2.0)
    out = q_sample(sched, x0, torch.tensor([0, 1]), noise)
    assert_close(out[0], torch.full((1, 2, 2), 0.9 + 2 * math.sqrt(0.19)))
    assert_close(out[1], torch.full((1, 2, 2), math.sqrt(0.405) + 2 * math.sqrt(0.595)))


def test_posterior_against_bayes_rule():
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): the product of two Gaussians, by hand."""
    t = 500
    b, abar_prev = LINEAR.betas[t], LINEAR.alphas_cumprod[t - 1]
    x0, x_t = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3)
    prec = (1 - b) / b + 1 / (1 - abar_prev)                          # precisions add
    mean_hand = (torch.sqrt(1 - b) / b * x_t + torch.sqrt(abar_prev) / (1 - abar_prev) * x0) / prec
    mean, var, _ = q_posterior_mean_variance(LINEAR, x0, x_t, torch.tensor([t]))
    assert_parity(mean, mean_hand.float(), what="posterior mean vs Bayes' rule")
    assert var.flatten()[0].item() == pytest.approx((1 / prec).item(), rel=1e-6)


def test_space_timesteps_like_the_official_respacing():
    kept = space_timesteps(1000, "250")
    assert len(kept) == 250 and kept[:5] == [0, 4, 8, 12, 16] and kept[-1] == 999
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(100, [2, 3]) == [0, 49, 50, 74, 99]
    with pytest.raises(ValueError):
        space_timesteps(10, "20")


def test_respacing_keeps_a_bar():
    kept = space_timesteps(1000, "250")
    short = respace(LINEAR, kept)
    assert short.num_steps == 250
    assert_close(short.alphas_cumprod, LINEAR.alphas_cumprod[kept])
    assert short.timesteps.tolist() == kept


@pytest.mark.parametrize("index", [0, 1, 100, 249])
def test_ddpm_step_learned_range_matches_diffusers(index):
    """One ancestral step on DiT's 250-step respaced chain vs DDPMScheduler(variance_type=learned_range)."""
    from diffusers import DDPMScheduler
    kept = space_timesteps(1000, "250")
    sched = respace(LINEAR, kept)
    ref = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=False)
    ref.set_timesteps(timesteps=kept[::-1])
    g = torch.Generator().manual_seed(index)
    x_t, model_output = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 8, 4, 4, generator=g)
    model_output[:, 4:] = model_output[:, 4:].clamp(-1, 1)
    expected = ref.step(model_output, kept[index], x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    ours, _ = ddpm_step(sched, index, model_output, x_t, noise, learn_sigma=True)
    # At index 0 (the last step) no noise is added, so the official clipped log-variance at t = 0
    # (beta~_1 instead of diffusers' clamp to 1e-20) does not change the sample.
    assert_parity(ours, expected, tol=FP32_OTHER_KERNEL, what=f"DDPM step {index} vs DDPMScheduler")


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_matches_diffusers(eta):
    from diffusers import DDIMScheduler
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    ref.set_timesteps(50)                                           # "leading": 980, 960, ..., 0
    sched = respace(LINEAR, ref.timesteps.tolist())
    x = torch.randn(2, 4, 4, 4)
    for i in (49, 20, 0):
        t = int(sched.timesteps[i])
        eps, noise = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
        expected = ref.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        ours, _ = ddim_step(sched, i, eps, x, noise, eta=eta)
        assert_parity(ours, expected, tol=FP32_OTHER_KERNEL, what=f"DDIM step {i}, eta {eta} vs DDIMScheduler")


def test_fixed_variances_and_clipping():
    x_t, out = torch.randn(1, 2, 2, 2), torch.randn(1, 2, 2, 2)
    t = torch.tensor([10])
    small = p_mean_variance(LINEAR, out, x_t, t, learn_sigma=False, variance="fixed_small")
    large = p_mean_variance(LINEAR, out, x_t, t, learn_sigma=False, variance="fixed_large")
    assert small["variance"].flatten()[0].item() == pytest.approx(LINEAR.posterior_variance[10].item(), rel=1e-6)
    assert large["variance"].flatten()[0].item() == pytest.approx(LINEAR.betas[10].item(), rel=1e-6)
    clipped = p_mean_variance(LINEAR, out * 100, x_t, t, learn_sigma=False, clip_denoised=True)
    assert clipped["pred_x0"].abs().max() <= 1
    with pytest.raises(ValueError, match="learn_sigma expects 4"):
        p_mean_variance(LINEAR, out, x_t, t, learn_sigma=True)


def test_normal_kl_against_torch_distributions():
    m1, lv1, m2, lv2 = torch.randn(4), torch.randn(4), torch.randn(4), torch.randn(4)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                            torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    assert_parity(normal_kl(m1, lv1, m2, lv2), ref, what="normal_kl vs torch.distributions")


def test_discretized_likelihood_is_a_distribution_over_256_bins():
    bins = torch.linspace(-1, 1, 256)
    for mean, log_scale in [(0.3, -2.0), (-0.9, -3.0), (0.0, 0.0)]:
        logp = discretized_gaussian_log_likelihood(bins, torch.full_like(bins, mean), torch.full_like(bins, log_scale))
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=2e-3)
    # and close to the exact Gaussian mass of an interior bin
    x, mean, s = torch.tensor([0.2]), torch.tensor([0.25]), 0.1
    exact = torch.special.ndtr((x + 1 / 255 - mean) / s) - torch.special.ndtr((x - 1 / 255 - mean) / s)
    approx = discretized_gaussian_log_likelihood(x, mean, torch.tensor([math.log(s)])).exp()
    assert_close(approx, exact, atol=1e-3, rtol=1e-2)


def test_training_losses():
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    t, noise = torch.tensor([0, 10, 999]), torch.randn(3, 1, 4, 4)
    perfect = lambda x_t, tt: torch.cat([noise, torch.zeros_like(noise)], 1)    # noqa: E731
    terms = training_losses(perfect, LINEAR, x0, t, noise, learn_sigma=True)
    assert torch.all(terms["mse"] == 0)
    assert torch.all(terms["vb"] >= 0) and torch.all(terms["loss"] == terms["vb"])
    eps_only = lambda x_t, tt: torch.zeros_like(x_t)                            # noqa: E731
    terms = training_losses(eps_only, LINEAR, x0, t, noise, learn_sigma=False)
    assert_close(terms["loss"], (noise**2).mean(dim=(1, 2, 3)))
    # vb gets no gradient into eps: only the variance half learns from it
    out = torch.randn(3, 2, 4, 4, requires_grad=True)
    terms = training_losses(lambda x_t, tt: out, LINEAR, x0, torch.tensor([5, 6, 7]), noise)
    terms["vb"].sum().backward()
    assert torch.all(out.grad[:, :1] == 0) and out.grad[:, 1:].abs().sum() > 0


def test_samplers_recover_a_point_mass():
    """With the exact eps of a data distribution concentrated at x0*, both samplers must return x0*."""
    x_star = torch.tensor([0.5, -0.25]).reshape(1, 2, 1, 1)
    sched = respace(LINEAR, space_timesteps(1000, "50"))
    abar_full = LINEAR.alphas_cumprod

    def exact_eps(x, t):
        a = abar_full[t].float().reshape(-1, 1, 1, 1)
        return (x - a.sqrt() * x_star) / (1 - a).sqrt()

    x_T = torch.randn(4, 2, 1, 1, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(exact_eps, x_T, Grid.from_schedule(sched), progress=False)
    assert_close(out, x_star.expand(4, 2, 1, 1), atol=1e-4, rtol=0)
    out = ddpm_sample(exact_eps, x_T, Grid.from_schedule(sched), learn_sigma=False, generator=torch.Generator().manual_seed(1),
                      progress=False)
    assert_close(out, x_star.expand(4, 2, 1, 1), atol=1e-3, rtol=0)


def test_vlb_term_is_the_kl_in_bits_and_the_decoder_nll_at_t0():
    """training_losses' `vb`, written out independently of minidit.diffusion: for t > 0 the KL between
    the true posterior (Bayes' rule) and the model's Gaussian (learned-range variance) from
    torch.distributions, in bits per dimension; at t = 0 the negative log-likelihood of the 8-bit
    data under the model's Gaussian, integrated over each 1/127.5-wide bin with the exact normal CDF."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, 256, (4, 2, 3, 3), generator=g).double() / 127.5 - 1       # 8-bit data, incl. +-1
    x0[0, 0, 0, :2] = torch.tensor([-1.0, 1.0])                                     # both edge bins at t = 0
    noise = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    eps = noise + 0.3 * torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)   # an imperfect network
    v = torch.rand(4, 2, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 1, 250, 999])
    out = torch.cat([eps, v], dim=1).float()
    vb = training_losses(lambda x_t, tt: out, LINEAR, x0.float(), t, noise.float())["vb"]

    betas, abar = LINEAR.betas, LINEAR.alphas_cumprod
    post_var_1 = betas[1] * (1 - abar[0]) / (1 - abar[1])             # beta~_1: the clipped value used at t = 0
    expected = []
    for i, s in enumerate(t.tolist()):
        b, ab = betas[s], abar[s]
        ab_prev = abar[s - 1] if s > 0 else torch.tensor(1.0, dtype=torch.float64)
        x_t = ab.sqrt() * x0[i] + (1 - ab).sqrt() * noise[i]
        x0_pred = (x_t - (1 - ab).sqrt() * eps[i]) / ab.sqrt()

        def posterior_mean(start):                                      # precision-weighted, Bayes' rule
            return (ab_prev.sqrt() * b * start + (1 - b).sqrt() * (1 - ab_prev) * x_t) / (1 - ab)
        post_var = b * (1 - ab_prev) / (1 - ab)
        f = (v[i] + 1) / 2
        log_var = f * torch.log(b) + (1 - f) * torch.log(post_var if s > 0 else post_var_1)
        model = torch.distributions.Normal(posterior_mean(x0_pred), (0.5 * log_var).exp())
        if s > 0:
            true = torch.distributions.Normal(posterior_mean(x0[i]), post_var.sqrt())
            expected.append(torch.distributions.kl_divergence(true, model).mean() / math.log(2))
        else:
            upper = torch.where(x0[i] > 0.999, torch.ones_like(x0[i]), model.cdf(x0[i] + 1 / 255))
            lower = torch.where(x0[i] < -0.999, torch.zeros_like(x0[i]), model.cdf(x0[i] - 1 / 255))
            expected.append(-torch.log(upper - lower).mean() / math.log(2))
    expected = torch.stack(expected).float()
    assert expected[0] > 0.1 and expected[1:].min() > 0                 # a non-trivial bound
    # minidit (like IDDPM) uses a tanh approximation of the normal CDF at t = 0: close, not exact
    torch.testing.assert_close(vb[0], expected[0], rtol=2e-3, atol=0)
    torch.testing.assert_close(vb[1:], expected[1:], rtol=1e-4, atol=1e-7)
