"""Open-Sora 1.2's rectified-flow sampling: the timestep transform (hand-derived values) and the
`flow_opensora` grid run through `Sampler`, against the official `RFLOW.sample` loop written out here
(hpcaitech/Open-Sora v1.2.0 `opensora/schedulers/rf/__init__.py`, `rectified_flow.py`; tests/helpers/opensora.py)."""
import math

import pytest
import torch

from helpers import FP32_ELEMENTWISE, assert_parity
from helpers.opensora import official_rflow_sample
from minidit.errors import InputError
from minidit.flow import opensora_shift, shift_sigmas
from minidit.grid import opensora_flow_grid
from minidit.samplers import Sampler


@pytest.mark.parametrize("height, width, frames, expected", [
    (512, 512, 1, 1.0),                       # the base: no shift for a 512^2 image
    (1024, 1024, 1, 2.0),                     # sqrt(4 x the pixels)
    (512, 512, 17, math.sqrt(5)),             # one 17-frame clip = 5 latent frames
    (512, 512, 34, math.sqrt(10)),
    (240, 426, 51, 2.4187227469),             # 240p 9:16, "2s": sqrt(240*426/512^2) = 0.62451, * sqrt(15)
    (720, 1280, 102, 10.2697979532),          # 720p, "4s": 1.875 * sqrt(30)
    (512, 512, 40, math.sqrt(10)),            # 40 // 17 * 5 = 10: the remainder is ignored
])
def test_opensora_shift_hand_values(height, width, frames, expected):
    assert opensora_shift(height, width, frames) == pytest.approx(expected, rel=1e-9)


def test_opensora_transform_hand_values():
    # t' = s t / (1 + (s - 1) t): s = 2, t = 1/2 -> 2/3; s = sqrt(5), t = 1/2 -> sqrt5 / (1 + sqrt5)
    assert shift_sigmas(0.5, opensora_shift(1024, 1024, 1)) == pytest.approx(2 / 3, rel=1e-12)
    assert shift_sigmas(0.5, opensora_shift(512, 512, 17)) == pytest.approx(0.6909830056, rel=1e-9)


@pytest.mark.parametrize("frames", [2, 16])
def test_opensora_shift_refuses_the_zero_shift(frames):
    with pytest.raises(InputError, match="0 latent frames"):
        opensora_shift(512, 512, frames)


def test_opensora_grid_hand_values():
    g = opensora_flow_grid(2, shift=2.0)
    # t = 1, 1/2 -> shifted 1, 2/3; then 0. The model is fed t * 1000.
    assert_parity(g.sigmas, torch.tensor([1.0, 2 / 3, 0.0], dtype=torch.float64), tol=FP32_ELEMENTWISE)
    assert_parity(g.timesteps, torch.tensor([1000.0, 2000 / 3], dtype=torch.float64), tol=FP32_ELEMENTWISE)
    assert_parity(g.alphas, 1 - g.sigmas, tol=0.0)
    # unshifted: 1 - i/N, ending at 1/N (not SD3's 1/T)
    assert_parity(opensora_flow_grid(4).sigmas, torch.tensor([1, 0.75, 0.5, 0.25, 0], dtype=torch.float64), tol=0.0)


def test_sampler_runs_the_official_rflow_loop():
    torch.manual_seed(0)
    W = torch.randn(4, 4, dtype=torch.float64) * 0.3

    def network(z, t):                        # an Open-Sora-like network: 8 channels, predicts x0 - eps
        v = torch.einsum("oc,bc...->bo...", W, z) + (t / 1000).reshape(-1, 1, 1, 1, 1) - 0.5
        return torch.cat([v, 100 + v], dim=1)    # the learned-sigma half must be ignored

    z = torch.randn(2, 4, 3, 4, 4, dtype=torch.float64)
    expected, official_t = official_rflow_sample(network, z, 5, 240, 426, 51)
    seen = []

    def model_fn(x, t):                       # Open-Sora predicts x0 - eps; minidit's "flow" is eps - x0
        seen.append(float(t[0]))
        return -network(x, t.to(torch.float64))

    sampler = Sampler(name="euler", prediction_type="flow", spacing="flow_opensora",
                      shift=opensora_shift(240, 426, 51))
    x0 = sampler.run(model_fn, z, 5, learn_sigma=True, progress=False)
    assert seen == pytest.approx(official_t, rel=1e-6)         # timesteps go to the model as float32
    assert_parity(x0, expected, tol=FP32_ELEMENTWISE, what="Euler on flow_opensora vs the official loop")


def test_flow_opensora_refuses_a_dynamic_shift():
    from minidit.flow import DynamicShift
    with pytest.raises(ValueError, match="flow_opensora"):
        Sampler(name="euler", prediction_type="flow", spacing="flow_opensora", dynamic_shift=DynamicShift()).grid(10)
