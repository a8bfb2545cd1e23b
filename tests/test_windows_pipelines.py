"""The pipelines' `window=` option (PixArt, SD3, Hunyuan-DiT) on tiny random models with stub text encoders:
a window as large as the image is exactly the direct path; smaller windows give the latents of an oracle
that guides and blends each window's network calls by hand (the text, PixArt-α's size micro-condition,
Hunyuan's RoPE and size condition all of the window); the stats count windows and network calls; bad
options are refused before any compute; the command line passes --window / --window-overlap on."""
import pytest
import torch

from minidit.cli import build_parser
from minidit.errors import InputError
from minidit.hunyuan import HunyuanConfig, HunyuanDiT
from minidit.mmdit import MMDiT, MMDiTConfig
from minidit.pipelines.common import PromptEmbeds
from minidit.pipelines.hunyuan import HunyuanPipeline, official_sampling
from minidit.pipelines.pixart import PixArtPipeline
from minidit.pipelines.sd3 import SD3Pipeline, SD3Sampling
from minidit.pixart import PixArt, PixArtConfig
from minidit.samplers import Sampler
from minidit.vae import AutoencoderKL, VAEConfig

from helpers import FP32, assert_parity, randomize
from helpers.windows import hand_blend, ramp

torch.set_num_threads(1)
VAE = VAEConfig(ch=8, ch_mult=(1, 1, 1, 1), num_res_blocks=1, z_channels=4, norm_num_groups=8)
SIZE = (96, 128)                 # pixels: a 12 x 16 latent, in 8 x 8 windows (64 px) overlapping by 4 (32 px)
WINDOWS = dict(window=64, window_overlap=32)
STARTS = ((0, 4), (0, 4, 8))     # the windows' rows and columns (latent px), by hand
S = 4.0                          # guidance


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def latent_noise(seed=0):
    return torch.randn(1, 4, SIZE[0] // 8, SIZE[1] // 8, generator=torch.Generator().manual_seed(seed))


def vae():
    return randomize(AutoencoderKL(VAE), 1, 0.05)


# --------------------------------------------------------------------------------------------- PixArt (α, micro-conditions)

def pixart_pipe():
    torch.manual_seed(0)
    model = randomize(PixArt(PixArtConfig(input_size=8, hidden_size=24, depth=2, num_heads=2, caption_channels=16,
                                          model_max_length=6, micro_condition=True)), 1, 0.2)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    e = PromptEmbeds(randn(1, 6, 16, seed=2), mask, uncond=randn(1, 6, 16, seed=3), uncond_mask=torch.ones(1, 6))
    return PixArtPipeline(model, vae(), None, object(), variant="alpha"), e


def pixart_run(pipe, e, **kw):
    return pipe(prompt_embeds=e, height=SIZE[0], width=SIZE[1], num_inference_steps=2, guidance_scale=S,
                generator=torch.Generator().manual_seed(0), output_type="latent", use_resolution_binning=False,
                progress=False, **kw)


def pixart_oracle(pipe, e):
    model = pipe.transformer

    def guided(x, t):                    # one window: cond and uncond called apart, the window's own size
        hw, ar = torch.tensor([[x.shape[-2] * 8.0, x.shape[-1] * 8.0]]), torch.tensor([[x.shape[-2] / x.shape[-1]]])
        cond = model(x, t, e.cond, e.cond_mask, img_hw=hw, aspect_ratio=ar)
        uncond = model(x, t, e.uncond, e.uncond_mask, img_hw=hw, aspect_ratio=ar)
        return torch.cat([uncond[:, :4] + S * (cond[:, :4] - uncond[:, :4]), cond[:, 4:]], dim=1)
    return pipe.sampling.sampler.run(lambda x, t: hand_blend(guided, x, t, *STARTS, 8, ramp), latent_noise(), 2,
                                     learn_sigma=True, progress=False)


# --------------------------------------------------------------------------------------------- SD3

class SD3Text:
    def __init__(self):
        self.e = PromptEmbeds(randn(1, 5, 20, seed=4), cond_pooled=randn(1, 12, seed=5), uncond=randn(1, 5, 20, seed=6),
                              uncond_pooled=randn(1, 12, seed=7))

    def encode(self, *args, guided=True, **kw):
        return self.e


def sd3_pipe():
    torch.manual_seed(0)
    model = randomize(MMDiT(MMDiTConfig(patch_size=2, in_channels=4, depth=2, hidden_size=16, num_heads=2,
                                        adm_in_channels=12, context_dim=20, out_channels=4, pos_embed_max_size=16)), 2,
                      0.2)
    sampling = SD3Sampling(Sampler("euler", prediction_type="flow", spacing="flow", shift=3.0), steps=2, guidance=S)
    text = SD3Text()
    return SD3Pipeline(model, vae(), text, sampling), text.e


def sd3_run(pipe, e, **kw):
    return pipe("a cat", height=SIZE[0], width=SIZE[1], generator=torch.Generator().manual_seed(0),
                output_type="latent", progress=False, **kw)


def sd3_oracle(pipe, e):
    model = pipe.transformer

    def guided(x, t):                    # the official order [cond | uncond]; CFG on the velocity
        cond = model(x, t, y=e.cond_pooled, context=e.cond)
        uncond = model(x, t, y=e.uncond_pooled, context=e.uncond)
        return uncond + S * (cond - uncond)
    return pipe.sampling.sampler.run(lambda x, t: hand_blend(guided, x, t, *STARTS, 8, ramp), latent_noise(), 2,
                                     progress=False)


# --------------------------------------------------------------------------------------------- Hunyuan-DiT (v1.1: size condition)

class HunyuanText:
    def __init__(self):
        ones = lambda n: torch.ones(1, n, dtype=torch.long)                # noqa: E731
        self.bert = PromptEmbeds(randn(1, 77, 12, seed=8), ones(77), uncond=randn(1, 77, 12, seed=9), uncond_mask=ones(77))
        self.mt5 = PromptEmbeds(randn(1, 256, 16, seed=10), ones(256), uncond=randn(1, 256, 16, seed=11),
                                uncond_mask=ones(256))

    def encode(self, *args, **kw):
        return self.bert, self.mt5


def hunyuan_pipe():
    torch.manual_seed(0)
    model = randomize(HunyuanDiT(HunyuanConfig(patch_size=2, in_channels=4, hidden_size=16, depth=4, num_heads=2,
                                               mlp_ratio=2.0, text_states_dim=12, text_states_dim_t5=16, pooled_dim=20,
                                               size_cond=True)), 3, 0.2)
    text = HunyuanText()
    return HunyuanPipeline(model, vae(), text, official_sampling(True)), text


def hunyuan_run(pipe, e, **kw):
    return pipe("一只猫", height=SIZE[0], width=SIZE[1], num_inference_steps=2, guidance_scale=S,
                generator=torch.Generator().manual_seed(0), output_type="latent", progress=False, **kw)


def hunyuan_oracle(pipe, text):
    model, b, m = pipe.transformer, text.bert, text.mt5

    def guided(x, t):                    # RoPE: the model's default for the window's grid (official, base 32)
        meta = torch.tensor([[1024.0, 1024.0, x.shape[-1] * 8.0, x.shape[-2] * 8.0, 0.0, 0.0]])   # target (W, H)
        style = torch.zeros(1, dtype=torch.long)
        v = [model(x, t, states, mask, states_t5, mask_t5, image_meta_size=meta, style=style)[:, :4]
             for states, mask, states_t5, mask_t5 in ((b.cond, b.cond_mask, m.cond, m.cond_mask),
                                                      (b.uncond, b.uncond_mask, m.uncond, m.uncond_mask))]
        return v[1] + S * (v[0] - v[1])
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(1, 4, SIZE[0] // 8, SIZE[1] // 8, generator=g)
    return pipe.sampling.sampler.run(lambda x, t: hand_blend(guided, x, t, *STARTS, 8, ramp), x_T, 2, generator=g,
                                     progress=False)


PIPES = {"pixart": (pixart_pipe, pixart_run, pixart_oracle), "sd3": (sd3_pipe, sd3_run, sd3_oracle),
         "hunyuan": (hunyuan_pipe, hunyuan_run, hunyuan_oracle)}


@pytest.mark.parametrize("name", PIPES)
def test_pipeline_windows_against_the_hand_oracle(name):
    make, run, oracle = PIPES[name]
    pipe, e = make()
    direct = run(pipe, e)
    assert torch.equal(run(pipe, e, window=SIZE), direct)               # one window: the direct path exactly
    assert pipe.last_run_stats["denoise"]["windows"] == 1
    windowed = run(pipe, e, **WINDOWS)
    stats = pipe.last_run_stats["denoise"]
    assert (stats["windows"], stats["forward_calls"], stats["window_evaluations"]) == (6, 2 * 6, 2 * 6)
    with torch.no_grad():
        expected = oracle(pipe, e)
    assert_parity(windowed, expected, tol=FP32, what=f"{name}: windowed pipeline vs hand-blended windows")
    assert (windowed - direct).abs().max() > 1e-3 * direct.abs().max()  # the windows do change the result
    batched = run(pipe, e, windows_per_call=4, **WINDOWS)
    assert_parity(batched, expected, tol=FP32, what=f"{name}: 4 windows per call")
    assert pipe.last_run_stats["denoise"]["forward_calls"] == 2 * 2     # 6 windows in calls of 4 + 2, 2 steps


@pytest.mark.parametrize("name", PIPES)
@pytest.mark.parametrize("kw,match", [
    (dict(window=256), "larger than the 96x128 image"),
    (dict(window=60), "multiple of 16 pixels"),
    (dict(window=64, window_overlap=64), "must be smaller than the window"),
    (dict(window=64, window_overlap=8), "non-negative multiple of 16"),
    (dict(window_overlap=16), "window_overlap without window"),
    (dict(window=64, window_blend="box"), "unknown window blend"),
    (dict(window=64, windows_per_call=0), "windows_per_call"),
])
def test_bad_window_options_are_refused_before_any_compute(name, kw, match):
    make, run, _ = PIPES[name]
    pipe, e = make()

    def refuse(*args):
        raise AssertionError("the transformer ran before the bad option was refused")
    pipe.transformer.register_forward_pre_hook(refuse)
    with pytest.raises(InputError, match=match):
        run(pipe, e, **kw)


def test_command_line_window_options(monkeypatch, tmp_path):
    """--window / --window-overlap reach the pipeline call (pixels)."""
    from minidit.pipelines import common
    seen = {}

    class Pipe:
        last_run_stats = {"denoise": {"size": "1x1", "seconds": 0.0, "start_gib": None, "peak_gib": None}}

        def __call__(self, prompt, **kw):
            seen.update(kw)
            raise InputError("stop here")
    args = build_parser().parse_args(["generate", "--model", "pixart-sigma-1024", "--prompt", "x", "--window",
                                      "1024", "--window-overlap", "256", "--height", "2048", "--width", "2048"])
    assert common.run_text_to_image(Pipe(), args, {}) == 2
    assert seen["window"] == 1024 and seen["window_overlap"] == 256 and seen["height"] == 2048
    args = build_parser().parse_args(["generate", "--model", "sd3.5-medium", "--prompt", "x"])
    seen.clear()
    common.run_text_to_image(Pipe(), args, {})
    assert "window" not in seen and "window_overlap" not in seen


def test_sd3_skip_layer_guidance_runs_on_windows_too():
    """The skip-layer call is a network call of its own: it is windowed as well, and counted."""
    from dataclasses import replace
    from minidit.pipelines.sd3 import SkipLayerGuidance
    pipe, e = sd3_pipe()
    pipe.sampling = replace(pipe.sampling, skip_layer_guidance=SkipLayerGuidance(layers=(1,), start=0.0, end=1.0))
    assert torch.equal(sd3_run(pipe, e, window=SIZE), sd3_run(pipe, e))
    sd3_run(pipe, e, **WINDOWS)
    # step 0: the guided call on 6 windows; step 1 (inside start..end): the guided and the skip-layer calls
    assert pipe.last_run_stats["denoise"]["forward_calls"] == 6 + 2 * 6
