"""Tier 6: the released DiT-XL/2 checkpoints, when a user has them.

    MINIDIT_WEIGHTS=/path/to/folder python -m pytest tests/test_real_weights_dit.py -m slow

The folder holds `DiT-XL-2-256x256.pt` (and optionally `-512x512.pt`), from
`wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt`. The oracle is diffusers'
DiTTransformer2DModel holding the same weights (mapped by the rules of
docs/checkpoints.md#dit-diffusers-layout-and-rename-rules, written independently below) with the
official timestep frequencies.
"""
import os
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

WEIGHTS = os.environ.get("MINIDIT_WEIGHTS")
pytestmark = pytest.mark.slow


def _checkpoint(name):
    if not WEIGHTS or not (Path(WEIGHTS) / name).is_file():
        pytest.skip(f"set MINIDIT_WEIGHTS to a folder holding {name} to run the real-weight tests")
    return Path(WEIGHTS) / name


def _to_diffusers(sd, depth=28):
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    for i in range(depth):
        a, b = f"transformer_blocks.{i}.", f"blocks.{i}."
        emb = a + "norm1.emb."
        out[emb + "timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"]
        out[emb + "timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"]
        out[emb + "timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"]
        out[emb + "timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"]
        out[emb + "class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        for kind in ("weight", "bias"):
            q, k, v = sd[b + f"attn.qkv.{kind}"].chunk(3)
            out[a + f"attn1.to_q.{kind}"], out[a + f"attn1.to_k.{kind}"], out[a + f"attn1.to_v.{kind}"] = q, k, v
            out[a + f"attn1.to_out.0.{kind}"] = sd[b + f"attn.proj.{kind}"]
            out[a + f"ff.net.0.proj.{kind}"] = sd[b + f"mlp.fc1.{kind}"]
            out[a + f"ff.net.2.{kind}"] = sd[b + f"mlp.fc2.{kind}"]
            out[a + f"norm1.linear.{kind}"] = sd[b + f"adaLN_modulation.1.{kind}"]
    return out


@pytest.mark.parametrize("name,side", [("DiT-XL-2-256x256.pt", 32), ("DiT-XL-2-512x512.pt", 64)])
def test_released_dit_matches_diffusers_with_official_frequencies(name, side):
    from diffusers import DiTTransformer2DModel

    from weights_loader import load_dit
    from weights_loader.io import read_state_dict
    path = _checkpoint(name)
    model = load_dit(path)
    assert (model.config.depth, model.config.hidden_size, model.config.input_size) == (28, 1152, side)
    ref = DiTTransformer2DModel(sample_size=side, norm_eps=1e-6).eval()
    ref.load_state_dict(_to_diffusers(read_state_dict(path)), strict=True)
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, side, side, generator=g)
    t, y = torch.tensor([999, 250]), torch.tensor([207, 1000])
    with torch.no_grad():
        assert_close(model(x, t, y), ref(x, t, y).sample, atol=2e-4, rtol=1e-4)
