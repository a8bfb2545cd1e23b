"""Tier 6: the released SD3 / SD3.5 files, when a user has them (gated repositories).

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_sd3.py -m slow

The folder holds `stable-diffusion-3.5-medium/` (or `stable-diffusion-3-medium-diffusers/`,
`stable-diffusion-3.5-large/`): `huggingface-cli download stabilityai/stable-diffusion-3.5-medium
--local-dir $MINIDIT_WEIGHTS/stable-diffusion-3.5-medium`. Those repositories hold both the official
single file and the diffusers layout; the oracle is diffusers' StableDiffusion3Pipeline on the
diffusers layout, minidit runs both.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import BF16, FP32_OTHER_KERNEL, assert_parity, require

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow
RELEASES = [("stable-diffusion-3.5-medium", "sd3.5_medium.safetensors"),
            ("stable-diffusion-3-medium-diffusers", None), ("stable-diffusion-3.5-large", "sd3.5_large.safetensors")]


def _folder(name):
    if not WEIGHTS or not (Path(WEIGHTS) / name / "model_index.json").is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name}/ to run the real-weight tests")
    return Path(WEIGHTS) / name


@pytest.mark.parametrize("name,single_file", RELEASES)
def test_released_sd3_matches_diffusers(name, single_file):
    diffusers = require("diffusers")
    from minidit.pipelines.sd3 import SD3Pipeline
    from weights_loader import load_mmdit
    folder = _folder(name)
    kw = dict(height=256, width=256, num_inference_steps=2, guidance_scale=5.0)
    ref = diffusers.StableDiffusion3Pipeline.from_pretrained(folder)
    ref.set_progress_bar_config(disable=True)
    expected = ref("a photo of a cat", generator=torch.Generator().manual_seed(0), output_type="latent", **kw).images
    ours = SD3Pipeline.from_pretrained(folder)("a photo of a cat", generator=torch.Generator().manual_seed(0),
                                             output_type="latent", progress=False, **kw)
    assert_parity(ours, expected, tol=FP32_OTHER_KERNEL, what=f"{name} latents")
    if single_file is not None:       # the official file holds the network of the diffusers layout
        official, diff = load_mmdit(folder / single_file), load_mmdit(folder)
        assert official.config == diff.config
        g = torch.Generator().manual_seed(1)
        x, t = torch.randn(1, 16, 32, 32, generator=g), torch.tensor([500.0])
        y, ctx = torch.randn(1, 2048, generator=g), torch.randn(1, 154, 4096, generator=g)
        with torch.no_grad():            # the two files may store the weights in float16 and bfloat16
            assert_parity(official(x, t, y=y, context=ctx), diff(x, t, y=y, context=ctx), tol=BF16,
                          what=f"{single_file} vs the diffusers layout")
    assert np.isfinite(ours.numpy()).all()
