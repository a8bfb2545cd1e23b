"""Tier 6: the released DiT-XL/2 checkpoints, when a user has them.

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_dit.py -m slow

The folder holds `DiT-XL-2-256x256.pt` (and optionally `-512x512.pt`), from
`wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt`. The oracle is diffusers'
DiTTransformer2DModel holding the same weights (mapped by the rules of
docs/checkpoints.md#dit-diffusers-layout-and-rename-rules, written independently in
tests/helpers/layouts/dit.py) with the official timestep frequencies.
"""
import os
from pathlib import Path

import pytest
import torch

from helpers import FP32_OTHER_KERNEL, assert_parity
from helpers.layouts.dit import original_to_diffusers

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def _checkpoint(name):
    if not WEIGHTS or not (Path(WEIGHTS) / name).is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name} to run the real-weight tests")
    return Path(WEIGHTS) / name


@pytest.mark.parametrize("name,side", [("DiT-XL-2-256x256.pt", 32), ("DiT-XL-2-512x512.pt", 64)])
def test_released_dit_matches_diffusers_with_official_frequencies(name, side):
    from diffusers import DiTTransformer2DModel

    from weights_loader import load_dit
    from weights_loader.io import read_state_dict
    path = _checkpoint(name)
    model = load_dit(path)
    assert (model.config.depth, model.config.hidden_size, model.config.input_size) == (28, 1152, side)
    ref = DiTTransformer2DModel(sample_size=side, norm_eps=1e-6).eval()
    ref.load_state_dict(original_to_diffusers(read_state_dict(path)), strict=True)
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, side, side, generator=g)
    t, y = torch.tensor([999, 250]), torch.tensor([207, 1000])
    with torch.no_grad():
        assert_parity(model(x, t, y), ref(x, t, y).sample, tol=FP32_OTHER_KERNEL, what=f"{name} vs diffusers")
