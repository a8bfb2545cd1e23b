"""SD3 pipeline: prompt -> image against diffusers' StableDiffusion3Pipeline on a tiny random folder,
and the official sampling (sd3_infer.py) against its own loop written out."""
import numpy as np
import pytest
import torch

from minidit.pipelines.sd3 import SD3Pipeline, SD3Sampling, SkipLayerGuidance

from helpers import FP32_OTHER_KERNEL, assert_parity, require
from helpers.sd3 import build_sd3_pipeline

diffusers = require("diffusers")
PROMPT = "a tiny red cube on a wooden table"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd3")
    build_sd3_pipeline(folder, tmp_path_factory.mktemp("sd3_work"))
    return folder


def reference(folder, drop_t5=False):
    kw = dict(text_encoder_3=None, tokenizer_3=None) if drop_t5 else {}
    pipe = diffusers.StableDiffusion3Pipeline.from_pretrained(folder, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.mark.parametrize("height,width,drop_t5", [(64, 64, False), (48, 96, False), (64, 64, True)])
def test_same_image_as_diffusers(folder, height, width, drop_t5):
    kw = dict(height=height, width=width, num_inference_steps=4, guidance_scale=5.0)
    ref = reference(folder, drop_t5)
    expected_latents = ref(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", **kw).images
    expected = ref(PROMPT, generator=torch.Generator().manual_seed(0), **kw).images
    pipe = SD3Pipeline.from_pretrained(folder, drop_t5=drop_t5)
    assert pipe.sampling.sampler.name == "euler" and pipe.sampling.sampler.shift == 3.0
    latents = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="latent", progress=False, **kw)
    assert_parity(latents, expected_latents, tol=FP32_OTHER_KERNEL, what=f"latents {height}x{width}, drop_t5={drop_t5}")
    got = pipe(PROMPT, generator=torch.Generator().manual_seed(0), progress=False, **kw)
    assert len(got) == 1 and got[0].size == (width, height)
    diff = np.abs(pixels(got) - pixels(expected))
    assert diff.max() <= 1, f"max pixel difference {diff.max()} / 255"
    assert pixels(expected).std() > 5                                  # a real picture, not a constant
    assert pipe.last_run_stats["denoise"]["text_tokens"] == (77 + 256)  # diffusers' T5 length


def test_batch_negative_prompt_and_skip_layer_guidance_match_diffusers(folder):
    kw = dict(height=64, width=64, num_inference_steps=10, guidance_scale=4.0, num_images_per_prompt=2)
    ref = reference(folder)
    expected = ref([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], skip_guidance_layers=[1],
                   skip_layer_guidance_scale=2.8, skip_layer_guidance_start=0.01, skip_layer_guidance_stop=0.3,
                   generator=torch.Generator().manual_seed(1), output_type="latent", **kw).images
    pipe = SD3Pipeline.from_pretrained(folder)
    from dataclasses import replace
    pipe.sampling = replace(pipe.sampling, skip_layer_guidance=SkipLayerGuidance(layers=(1,), scale=2.8, start=0.01,
                                                                                  end=0.3))
    got = pipe([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], generator=torch.Generator().manual_seed(1),
               output_type="latent", progress=False, **kw)
    assert got.shape == (4, 16, 8, 8)
    assert_parity(got, expected, tol=FP32_OTHER_KERNEL, what="batch of 2 x 2 with negatives and skip-layer guidance")
    plain = ref([PROMPT, "a blue sphere"], negative_prompt=["blurry", "dark"], generator=torch.Generator().manual_seed(1),
                output_type="latent", **kw).images
    assert (plain - expected).abs().max() > 1e-3                       # the skip-layer term did something


def test_bad_sizes_and_folders(folder, tmp_path):
    pipe = SD3Pipeline.from_pretrained(folder)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(PROMPT, height=72, width=64, progress=False)
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPT, output_type="jpeg")
    with pytest.raises(FileNotFoundError, match="stable-diffusion-3"):
        SD3Pipeline.from_pretrained(tmp_path)
