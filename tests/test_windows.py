"""Sliding-window denoising (`minidit/windows.py`): the window grid and weights by hand, one window = the
direct path bitwise, and one sampling run of tiny PixArt / SD3 / Hunyuan / DiT models against an oracle
that calls the network on each window itself and blends by hand-written weights."""
import math

import pytest
import torch

from minidit.dit import DiT, DiTConfig
from minidit.errors import InputError
from minidit.hunyuan import HunyuanConfig, HunyuanDiT
from minidit.mmdit import MMDiT, MMDiTConfig
from minidit.pixart import PixArt, PixArtConfig
from minidit.samplers import Sampler
from minidit.windows import BLENDS, WindowedModel, tile_batch, window_grid, window_weights

from helpers import FP32, assert_parity, randomize
from helpers.windows import hand_blend, ramp

torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# The grid and the weights
# --------------------------------------------------------------------------------------------

def test_window_starts_by_hand():
    # 40 px, window 16, overlap 4: step 12 -> 0, 12, then the last one flush with the edge at 24
    g = window_grid(40, 16, 16, 4)
    assert g.ys == (0, 12, 24) and g.xs == (0,) and len(g) == 3
    assert window_grid(64, 64, 32, 0).boxes == [(0, 0), (0, 32), (32, 0), (32, 32)]
    assert window_grid(32, 32, 32, 8).boxes == [(0, 0)]                  # one window
    g = window_grid(24, 48, (24, 32), 8, patch=2)                        # a (height, width) window
    assert g.ys == (0,) and g.xs == (0, 16)


def test_linear_weights_by_hand():
    """Two windows of 8 columns overlapping by 4 on a 16 x 12 latent: the ramps are k/5 and (5-k)/5."""
    w = window_weights(window_grid(16, 12, (16, 8), 4), "linear")
    left = torch.tensor([1, 1, 1, 1, 4 / 5, 3 / 5, 2 / 5, 1 / 5], dtype=torch.float64)
    assert torch.allclose(w[0], left.expand(16, 8)) and torch.allclose(w[1], left.flip(0).expand(16, 8))
    u = window_weights(window_grid(16, 12, (16, 8), 4), "uniform")
    assert torch.allclose(u[0][:, 4:], torch.full((16, 4), 0.5, dtype=torch.float64))
    assert torch.all(u[0][:, :4] == 1)


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("size,window,overlap", [((40, 40), 16, 4), ((64, 48), 16, 0), ((30, 50), (10, 20), 6),
                                                 ((96, 96), 32, 24)])
def test_windows_cover_every_pixel_and_weights_sum_to_one(blend, size, window, overlap):
    grid = window_grid(*size, window, overlap)
    assert grid.coverage().min() >= 1
    (wh, ww), weights = grid.window, window_weights(grid, blend)
    assert weights.min() > 0
    total = torch.zeros(size, dtype=torch.float64)
    for (y, x), w in zip(grid.boxes, weights):
        total[y:y + wh, x:x + ww] += w
    assert torch.allclose(total, torch.ones(size, dtype=torch.float64), rtol=0, atol=1e-12)
    # the window count of the module docstring
    per_axis = [1 if L == n else math.ceil((L - n) / (n - overlap)) + 1 for L, n in zip(size, grid.window)]
    assert len(grid) == per_axis[0] * per_axis[1]


@pytest.mark.parametrize("args,kw,match", [
    ((16, 16, 32, 0), {}, "larger than the 16x16 latent"),
    ((32, 32, 16, 16), {}, "overlap 16 must be smaller"),
    ((32, 32, 16, 20), {}, "overlap 20 must be smaller"),
    ((32, 32, 15, 0), dict(patch=2), "not a multiple of the patch size 2"),
    ((32, 32, 16, 3), dict(patch=2), "overlap 3 .* not a multiple of the patch size"),
    ((32, 32, 0, 0), {}, "window must be an integer >= 1"),
    ((32, 32, 16, -1), {}, "overlap must be an integer >= 0"),
    ((32, 32, 16.0, 0), {}, "window must be an integer"),
    ((32, 32, (16, 16, 16), 0), {}, "window must be an integer or a"),
    ((32, 31, 16, 0), dict(patch=2), "latent 32x31 is not a multiple"),
])
def test_bad_window_options_are_refused(args, kw, match):
    with pytest.raises(InputError, match=match):
        window_grid(*args, **kw)


def test_bad_wrapper_options_are_refused_before_any_call():
    def model_fn(x, t):
        raise AssertionError("the network ran")
    with pytest.raises(InputError, match="unknown window blend 'cosine'"):
        WindowedModel(model_fn, 16, blend="cosine")
    with pytest.raises(InputError, match="windows_per_call must be an integer >= 1"):
        WindowedModel(model_fn, 16, windows_per_call=0)
    with pytest.raises(InputError, match="larger than the 8x8 latent"):
        WindowedModel(model_fn, 16)(torch.zeros(1, 4, 8, 8), torch.zeros(1))
    with pytest.raises(InputError, match="do not tile a batch of 5"):
        tile_batch(torch.zeros(2, 3), 5)


def test_position_independent_function_is_blended_exactly():
    """A per-pixel function gives the same values in every window: blending must return it exactly."""
    x = torch.randn(2, 3, 40, 56)
    fn = lambda x, t: torch.tanh(x) * t[:, None, None, None]                 # noqa: E731
    t = torch.tensor([0.5, 2.0])
    for blend in BLENDS:
        for k in (1, 3):
            out = WindowedModel(fn, 16, 6, blend=blend, windows_per_call=k)(x, t)
            assert_parity(out, fn(x, t), tol=FP32, what=f"{blend}, {k} per call")


# --------------------------------------------------------------------------------------------
# Tiny models: (model_fn(x, t) given the batch-B conditioning tiled to x's batch, the latent's C, patch)
# --------------------------------------------------------------------------------------------

def _pixart():
    torch.manual_seed(0)
    model = randomize(PixArt(PixArtConfig(input_size=8, hidden_size=32, depth=2, num_heads=2, caption_channels=16,
                                          model_max_length=6, pe_interpolation=0.5)), 1, 0.2).eval()
    y, mask = torch.randn(2, 6, 16), torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6])
    return lambda x, t: model(x, t, tile_batch(y, x.shape[0]), tile_batch(mask, x.shape[0]))


def _sd3():
    torch.manual_seed(0)
    model = randomize(MMDiT(MMDiTConfig(patch_size=2, in_channels=4, depth=2, hidden_size=16, num_heads=2,
                                        adm_in_channels=12, context_dim=20, out_channels=4, pos_embed_max_size=16)),
                      2, 0.2).eval()
    pooled, context = torch.randn(2, 12), torch.randn(2, 5, 20)
    return lambda x, t: model(x, t, y=tile_batch(pooled, x.shape[0]), context=tile_batch(context, x.shape[0]))


def _hunyuan():
    torch.manual_seed(0)
    model = randomize(HunyuanDiT(HunyuanConfig(patch_size=2, in_channels=4, hidden_size=16, depth=4, num_heads=2,
                                               mlp_ratio=2.0, text_states_dim=12, text_states_dim_t5=16,
                                               pooled_dim=20, text_len=5, text_len_t5=7)), 3, 0.2).eval()
    text = dict(encoder_hidden_states=torch.randn(2, 5, 12), text_embedding_mask=torch.ones(2, 5, dtype=torch.long),
                encoder_hidden_states_t5=torch.randn(2, 7, 16), text_embedding_mask_t5=torch.ones(2, 7, dtype=torch.long))
    # no cos/sin given: the model builds the RoPE of the grid it is given (the window's)
    return lambda x, t: model(x, t, **{k: tile_batch(v, x.shape[0]) for k, v in text.items()})


def _dit():
    torch.manual_seed(0)
    model = randomize(DiT(DiTConfig(input_size=8, hidden_size=32, depth=2, num_heads=2, num_classes=10)), 4, 0.2).eval()
    labels = torch.tensor([3, 7])
    return lambda x, t: model(x, t, tile_batch(labels, x.shape[0]))


MODELS = {"pixart": _pixart, "sd3": _sd3, "hunyuan": _hunyuan, "dit": _dit}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("blend", BLENDS)
def test_one_window_is_exactly_the_direct_path(name, blend):
    model_fn = MODELS[name]()
    x, t = torch.randn(2, 4, 12, 16, generator=torch.Generator().manual_seed(5)), torch.tensor([900, 300])
    with torch.no_grad():
        direct = model_fn(x, t)
        windowed = WindowedModel(model_fn, (12, 16), 4, blend=blend, patch=2)
        assert torch.equal(windowed(x, t), direct)
    assert windowed.calls == windowed.evaluations == 1


# model, sampler, prediction type, learned sigma, steps
RUNS = [("pixart", Sampler("dpm_solver++", spacing="linspace"), True, 3),
        ("sd3", Sampler("euler", prediction_type="flow", spacing="flow", shift=3.0), False, 3),
        ("hunyuan", Sampler("ddpm", prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
                            beta_end=0.02, steps_offset=1), True, 3),
        ("dit", Sampler("ddim", spacing="leading"), True, 2)]


@pytest.mark.parametrize("name,sampler,learn_sigma,steps", RUNS, ids=[r[0] for r in RUNS])
@pytest.mark.parametrize("blend", ["uniform", "linear"])
def test_windowed_sampling_matches_the_hand_blend(name, sampler, learn_sigma, steps, blend):
    """A 12 x 16 latent in 8 x 8 windows overlapping by 4: rows at 0, 4, columns at 0, 4, 8 (6 windows).
    The sampler runs on the wrapper and, separately, on the oracle (same noise): same latents."""
    model_fn = MODELS[name]()
    x_T = torch.randn(2, 4, 12, 16, generator=torch.Generator().manual_seed(1))
    weight = None if blend == "uniform" else ramp
    oracle = lambda x, t: hand_blend(model_fn, x, t, (0, 4), (0, 4, 8), 8, weight)   # noqa: E731
    runs = {}
    for label, fn in [("oracle", oracle), ("windows", WindowedModel(model_fn, 8, 4, blend=blend, patch=2)),
                      ("batched", WindowedModel(model_fn, 8, 4, blend=blend, patch=2, windows_per_call=4)),
                      ("direct", model_fn)]:
        runs[label] = sampler.run(fn, x_T, steps, learn_sigma=learn_sigma, progress=False,
                                  generator=torch.Generator().manual_seed(2))
    scale = runs["oracle"].abs().max()
    assert_parity(runs["windows"], runs["oracle"], tol=FP32, what=f"{name} windows vs hand blend")
    assert_parity(runs["batched"], runs["oracle"], tol=FP32, what=f"{name} 4 windows per call vs hand blend")
    # negative control: the windows change the result (each sees only its part of the latent)
    assert (runs["direct"] - runs["oracle"]).abs().max() > 1e-3 * scale


def test_counts_of_calls_and_windows():
    calls = []
    fn = lambda x, t: (calls.append(x.shape[0]), x)[1]                       # noqa: E731
    windowed = WindowedModel(fn, 8, 4, windows_per_call=4)
    windowed(torch.zeros(2, 1, 12, 16), torch.zeros(2))
    assert calls == [8, 4] and windowed.calls == 2 and windowed.evaluations == 6
    stats = windowed.stats(12, 16)
    assert stats["windows"] == 6 and stats["forward_calls"] == 2 and stats["window_latent"] == "8x8"
