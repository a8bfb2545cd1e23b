"""Tier 6: the released Latte-1 transformer, when a user has it.

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_latte.py -m slow

The folder holds `Latte-1/` from `huggingface-cli download maxin-cn/Latte-1 --local-dir Latte-1` (only
`transformer/` is read: `--include "transformer/*"` is enough). The oracle is diffusers'
LatteTransformer3DModel loaded from the same folder; the input is 16 frames of a 32 x 32 latent (256 px)
to keep it at a few GiB on the CPU.
"""
import os
from pathlib import Path

import pytest
import torch

from helpers import FP32_OTHER_KERNEL, assert_parity

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def test_released_latte_1_matches_diffusers():
    folder = Path(WEIGHTS or "") / "Latte-1"
    if not WEIGHTS or not (folder / "transformer" / "config.json").is_file():
        pytest.skip("set MINIDIT_WEIGHTS to a folder holding Latte-1/transformer/ to run the real-weight test")
    from diffusers import LatteTransformer3DModel

    from minidit.latte import PRESETS
    from weights_loader import load_latte
    model = load_latte(folder)
    assert model.config == PRESETS["Latte-1"]
    ref = LatteTransformer3DModel.from_pretrained(folder, subfolder="transformer").eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 4, 16, 32, 32, generator=g), torch.randn(1, 12, 4096, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        expected = ref(x, timestep=t, encoder_hidden_states=y, return_dict=False)[0]
        assert_parity(model(x, t, y), expected, tol=FP32_OTHER_KERNEL, what="Latte-1 vs diffusers")
