"""Tier 6: the released Hunyuan-DiT pipelines, when a user has them.

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_hunyuan_pipeline.py -m slow

The folder holds `HunyuanDiT-v1.2-Diffusers/` and/or `HunyuanDiT-Diffusers/` (v1.1):
`huggingface-cli download Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers --local-dir
$MINIDIT_WEIGHTS/HunyuanDiT-v1.2-Diffusers`. The oracle is diffusers' HunyuanDiTPipeline on the same
folder (float32, CPU: about 13 GB of memory for the transformer and mT5-XL).
"""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import FP32_OTHER_KERNEL, assert_parity, require

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def _folder(name):
    if not WEIGHTS or not (Path(WEIGHTS) / name / "model_index.json").is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name}/ to run the real-weight tests")
    return Path(WEIGHTS) / name


@pytest.mark.parametrize("name", ["HunyuanDiT-v1.2-Diffusers", "HunyuanDiT-Diffusers"])
def test_released_hunyuan_pipeline_matches_diffusers(name):
    """A 768 x 1280 (non-square) bilingual prompt, 3 steps: follow="diffusers" gives diffusers' latents."""
    diffusers = require("diffusers")
    from minidit.pipelines.hunyuan import HunyuanPipeline
    folder = _folder(name)
    prompt, kw = "一只可爱的猫 sitting on a red sofa", dict(height=768, width=1280, num_inference_steps=3)
    ref = diffusers.HunyuanDiTPipeline.from_pretrained(folder)
    ref.set_progress_bar_config(disable=True)
    expected = ref(prompt, generator=torch.Generator().manual_seed(0), output_type="latent", **kw).images
    ours = HunyuanPipeline.from_pretrained(folder, follow="diffusers")(
        prompt, generator=torch.Generator().manual_seed(0), output_type="latent", progress=False, **kw)
    assert_parity(ours, expected, tol=FP32_OTHER_KERNEL, what=f"{name} latents")
    assert np.isfinite(ours.numpy()).all()
