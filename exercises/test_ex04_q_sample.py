"""Grader for exercise 4: python -m pytest exercises/test_ex04_q_sample.py"""
import math

import torch

from exercises._grading import FP32_ELEMENTWISE, check_close, check_shape, load
from minidit.diffusion import get_beta_schedule, make_schedule, respace, space_timesteps
from minidit.diffusion import q_sample as reference_q_sample

ex = load("ex04_q_sample")


def test_shape_and_dtype():
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    x0, noise = torch.randn(3, 2, 5, 7), torch.randn(3, 2, 5, 7)
    x_t = ex.q_sample(schedule, x0, torch.tensor([0, 500, 999]), noise)
    check_shape(x_t, (3, 2, 5, 7), "q_sample(x0 of shape (3, 2, 5, 7))")
    assert x_t.dtype == torch.float32, f"x_t should be float32 like x0, got {x_t.dtype}"


def test_hand_made_schedule():
    # betas (0.1, 0.2, 0.5) -> a_bar = (0.9, 0.72, 0.36); each sample has its own t.
    schedule = make_schedule(torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64))
    t = torch.tensor([2, 0, 1])
    x0 = torch.tensor([1.0, -2.0, 3.0]).reshape(3, 1, 1, 1).expand(3, 2, 2, 2)
    noise = torch.full((3, 2, 2, 2), 2.0)
    a_bar = {0: 0.9, 1: 0.72, 2: 0.36}

    def x_t(a, b):                      # a(step) * x0 + b(step) * noise, per sample
        return torch.stack([torch.full((2, 2, 2), a(int(ti)) * float(x0[i, 0, 0, 0]) + b(int(ti)) * 2.0)
                            for i, ti in enumerate(t)])
    expected = x_t(lambda s: math.sqrt(a_bar[s]), lambda s: math.sqrt(1 - a_bar[s]))
    # sample 0: 0.6 * 1 + 0.8 * 2 = 2.2
    alpha, a_bar_prev = {0: 0.9, 1: 0.8, 2: 0.5}, {0: 1.0, 1: 0.9, 2: 0.72}
    mistakes = {
        "The square roots are missing: x_t = sqrt(a_bar_t) x0 + sqrt(1 - a_bar_t) eps.":
            x_t(lambda s: a_bar[s], lambda s: 1 - a_bar[s]),
        "You used alpha_t = 1 - beta_t; x_t needs a_bar_t, the cumulative product (schedule.alphas_cumprod).":
            x_t(lambda s: math.sqrt(alpha[s]), lambda s: math.sqrt(1 - alpha[s])),
        "You used a_bar of the step before (t - 1, alphas_cumprod_prev); x_t uses a_bar_t itself.":
            x_t(lambda s: math.sqrt(a_bar_prev[s]), lambda s: math.sqrt(1 - a_bar_prev[s])),
        "The two coefficients are swapped: sqrt(a_bar_t) multiplies x0, sqrt(1 - a_bar_t) the noise.":
            x_t(lambda s: math.sqrt(1 - a_bar[s]), lambda s: math.sqrt(a_bar[s])),
    }
    check_close(ex.q_sample(schedule, x0, t, noise), expected,
                "q_sample with betas (0.1, 0.2, 0.5) at t = (2, 0, 1)", mistakes=mistakes)


def test_float64_schedule_at_t0():
    # Linear schedule: 1 - a_bar_0 = beta_0 = 1e-4, so the noise coefficient at t = 0 is exactly 0.01.
    # In float32, 1 - a_bar_0 keeps only ~4 significant digits: sqrt gives 0.0100008 (relative error 8e-5).
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    x0, noise = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    got = ex.q_sample(schedule, x0, torch.tensor([0]), noise)
    check_close(got, torch.full((1, 1, 2, 2), 0.01), "sqrt(1 - a_bar_0) at t = 0 (x0 = 0, noise = 1); if this is "
                "off by ~8e-7, compute 1 - a_bar in float64 and cast afterwards (see the TODO box)",
                tol=2e-7, scale=0.01)


def test_float64_schedule_at_t999():
    # sqrt(a_bar_999) from the product of (1 - beta) in Python floats (float64): x0 = 1, noise = 0.
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    expected = math.sqrt(math.prod(1 - b for b in betas))
    schedule = make_schedule(get_beta_schedule("linear", 1000))
    got = ex.q_sample(schedule, torch.ones(1, 1, 1, 1), torch.tensor([999]), torch.zeros(1, 1, 1, 1))
    check_close(got, torch.full((1, 1, 1, 1), expected), "sqrt(a_bar_999) (x0 = 1, noise = 0)",
                tol=FP32_ELEMENTWISE, scale=expected)


def test_respaced_schedule_keeps_marginals():
    # Respacing keeps a_bar at the kept steps: step i of the respaced chain is timestep use[i] of the full one.
    full = make_schedule(get_beta_schedule("linear", 1000))
    use = space_timesteps(1000, "10")
    short = respace(full, use)
    i = torch.tensor([0, 4, 9])
    x0, noise = torch.randn(3, 2, 3, 3), torch.randn(3, 2, 3, 3)
    try:
        got = ex.q_sample(short, x0, i, noise)
    except IndexError as e:
        raise AssertionError(f"q_sample on a respaced schedule raised IndexError ({e}): t is the step index i "
                             "(0 .. S-1) and alphas_cumprod already holds a_bar at the kept timesteps, so index "
                             "it with t directly, not with schedule.timesteps[t].") from None
    check_close(got, ex.q_sample(full, x0, torch.tensor(use)[i], noise),
                "q_sample on a respaced schedule at step i vs the full schedule at timesteps[i]")


def test_matches_minidit():
    torch.manual_seed(0)
    for name in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        schedule = make_schedule(get_beta_schedule(name, 1000))
        x0, noise = torch.randn(6, 3, 4, 5), torch.randn(6, 3, 4, 5)
        t = torch.tensor([0, 1, 17, 500, 998, 999])
        check_close(ex.q_sample(schedule, x0, t, noise), reference_q_sample(schedule, x0, t, noise),
                    f"q_sample with the {name} schedule vs minidit")
