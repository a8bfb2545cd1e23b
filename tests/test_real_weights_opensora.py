"""Tier 6: the released Open-Sora 1.2 folders, when a user has them.

    huggingface-cli download hpcai-tech/OpenSora-STDiT-v3 --local-dir $MINIDIT_WEIGHTS/OpenSora-STDiT-v3
    huggingface-cli download hpcai-tech/OpenSora-VAE-v1.2 --local-dir $MINIDIT_WEIGHTS/OpenSora-VAE-v1.2
    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_opensora.py -m slow

The transformer must load strictly with its config read from config.json (1,207,643,936 parameters);
the VAE's per-frame part must decode like diffusers' AutoencoderKL holding the same tensors.
"""
import os
from pathlib import Path

import pytest
import torch

from helpers import FP32_OTHER_KERNEL, assert_parity, require

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def _folder(name):
    if not WEIGHTS or not (Path(WEIGHTS) / name / "config.json").is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name}/ to run the real-weight tests")
    return Path(WEIGHTS) / name


def test_released_stdit3_loads():
    from minidit.stdit3 import STDIT3_XL_2
    from weights_loader import load_stdit3
    model = load_stdit3(_folder("OpenSora-STDiT-v3"), dtype=torch.bfloat16)
    c = model.config
    assert (c.hidden_size, c.depth, c.num_heads, c.patch_size) == (STDIT3_XL_2.hidden_size, 28, 16, (1, 2, 2))
    assert sum(p.numel() for p in model.parameters()) == 1_207_643_936
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1, 4, 2, 8, 8, generator=g), torch.randn(1, 300, 4096, generator=g) * 0.1
    with torch.no_grad():
        out = model(x, torch.tensor([900.0]), y, fps=24, height=64, width=64)
    assert out.shape == (1, 8, 2, 8, 8) and torch.isfinite(out.float()).all()


def test_released_vae_spatial_part_matches_diffusers():
    diffusers = require("diffusers")
    from weights_loader import load_opensora_vae, read_state_dict
    folder = _folder("OpenSora-VAE-v1.2")
    vae = load_opensora_vae(folder)
    sd = read_state_dict(folder)
    prefix = "spatial_vae.module."
    ref = diffusers.AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                                  block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4)
    ref.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    z = torch.randn(1, 4, 5, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        frames = vae.decode(z, num_frames=17)                                  # (1, 3, 17, 64, 64)
        x_z = vae.temporal_vae.decode(z * vae.scale + vae.shift, num_frames=17)
        expected = ref.eval().decode(x_z[0].transpose(0, 1) / 0.18215).sample  # the official per-frame decode
    assert_parity(frames[0].transpose(0, 1), expected, tol=FP32_OTHER_KERNEL, what="OpenSora-VAE-v1.2 decode")
