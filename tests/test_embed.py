"""Tier 1: the embedding functions against hand-derived values and diffusers' implementations."""
import math

import pytest
import torch
from torch.testing import assert_close

from minidit.embed import (LabelEmbedder, PatchEmbed, get_1d_sincos_pos_embed, get_2d_sincos_pos_embed,
                           patchify, timestep_embedding, unpatchify)

from helpers import EXACT, FP32, FP32_ELEMENTWISE, assert_parity


def test_timestep_embedding_hand_derived_cos_first():
    t = torch.tensor([0.0, 3.0])
    emb = timestep_embedding(t, 8)
    # half = 4, freqs = 10000^(-k/4) = 1, 0.1, 0.01, 0.001; layout [cos(t f) | sin(t f)]
    freqs = [1.0, 0.1, 0.01, 0.001]
    expected = torch.tensor([[1.0] * 4 + [0.0] * 4,
                             [math.cos(3 * f) for f in freqs] + [math.sin(3 * f) for f in freqs]])
    assert_parity(emb, expected, tol=FP32_ELEMENTWISE, what="timestep_embedding vs cos/sin by hand")


def test_timestep_embedding_odd_dim_is_zero_padded():
    emb = timestep_embedding(torch.tensor([5.0, 7.0]), 9)
    assert emb.shape == (2, 9)
    assert torch.all(emb[:, -1] == 0)
    assert_close(emb[:, :8], timestep_embedding(torch.tensor([5.0, 7.0]), 8))


@pytest.mark.parametrize("shift", [0, 1])
def test_timestep_embedding_matches_diffusers(shift):
    from diffusers.models.embeddings import get_timestep_embedding
    t = torch.tensor([0, 1, 17, 250, 999])
    ref = get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=shift)
    assert_parity(timestep_embedding(t, 256, freq_shift=shift), ref, tol=EXACT, what="vs diffusers' embedding")


def test_freq_shift_changes_the_embedding():
    # diffusers' DiT (shift 1) is not the official DiT (shift 0): docs/checkpoints.md#the-timestep-frequency-trap
    t = torch.tensor([500.0])
    diff = (timestep_embedding(t, 256, freq_shift=0) - timestep_embedding(t, 256, freq_shift=1)).abs().max()
    assert diff > 0.5


def test_1d_sincos_is_sin_first():
    pos = torch.tensor([0.0, 2.0])
    emb = get_1d_sincos_pos_embed(4, pos)               # omega = 1, 1/100
    expected = torch.tensor([[0, 0, 1, 1], [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]],
                            dtype=torch.float64)
    assert_close(emb, expected)


def test_2d_sincos_w_first_row_major():
    D, h, w = 16, 3, 5
    table = get_2d_sincos_pos_embed(D, (h, w))
    assert table.shape == (h * w, D)
    for i in range(h):
        for j in range(w):
            row = table[i * w + j]                      # token order: row-major, h outer
            assert_close(row[: D // 2], get_1d_sincos_pos_embed(D // 2, torch.tensor([float(j)]))[0].float())
            assert_close(row[D // 2:], get_1d_sincos_pos_embed(D // 2, torch.tensor([float(i)]))[0].float())


@pytest.mark.parametrize("grid,base,scale", [((8, 8), 8, 1.0), ((4, 6), 4, 1.0), ((16, 8), 8, 2.0),
                                             ((12, 20), 32, 0.5)])
def test_2d_sincos_matches_diffusers(grid, base, scale):
    from diffusers.models.embeddings import get_2d_sincos_pos_embed as ref_fn
    ref = ref_fn(32, grid, base_size=base, interpolation_scale=scale, output_type="pt")
    assert_parity(get_2d_sincos_pos_embed(32, grid, base_size=base, interpolation_scale=scale), ref.float(),
                  tol=FP32, what="2-D sin-cos table vs diffusers")


def test_pixart_stretching_keeps_positions_in_base_range():
    # PixArt-Σ-1024: 64x64 tokens, base_size 64, pe_interpolation 2 -> positions 0, 0.5, ..., 31.5
    table = get_2d_sincos_pos_embed(8, (64, 64), base_size=64, interpolation_scale=2.0)
    second_token_w = get_1d_sincos_pos_embed(4, torch.tensor([0.5]))[0].float()
    assert_close(table[1, :4], second_token_w)


def test_patchify_is_the_strided_conv():
    x = torch.randn(2, 3, 8, 12)
    embed = PatchEmbed(4, 3, 7)
    ref = embed(x)
    ours = patchify(x, 4) @ embed.proj.weight.flatten(1).T + embed.proj.bias
    assert ref.shape == (2, 6, 7)
    assert_parity(ours, ref, tol=FP32, what="patchify @ W.T + b vs the strided conv")


def test_unpatchify_matches_official_einsum():
    # The official DiT unpatchify, written independently with einsum.
    B, h, w, p, C = 2, 3, 4, 2, 5
    x = torch.randn(B, h * w, p * p * C)
    ref = torch.einsum("nhwpqc->nchpwq", x.reshape(B, h, w, p, p, C)).reshape(B, C, h * p, w * p)
    assert_parity(unpatchify(x, p, h, w), ref, tol=EXACT, what="unpatchify vs the official einsum")


def test_patch_errors_are_clear():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.randn(1, 4, 9, 8), 2)
    with pytest.raises(ValueError, match="not divisible"):
        PatchEmbed(2, 4, 8)(torch.randn(1, 4, 9, 8))
    with pytest.raises(ValueError, match="cannot unpatchify"):
        unpatchify(torch.randn(1, 5, 16), 2, 2, 2)


def test_label_embedder_null_class_and_dropout():
    emb = LabelEmbedder(num_classes=10, hidden_size=4, dropout_prob=0.5)
    assert emb.embedding_table.weight.shape == (11, 4)   # + the null class row
    labels = torch.arange(10)
    forced = emb(labels, force_drop_ids=torch.ones(10, dtype=torch.long))
    assert_close(forced, emb.embedding_table.weight[10].expand(10, 4))
    g = torch.Generator().manual_seed(0)
    dropped = emb.token_drop(torch.zeros(4000, dtype=torch.long), generator=g)
    frac = (dropped == 10).float().mean().item()
    assert abs(frac - 0.5) < 0.05
    assert LabelEmbedder(10, 4, 0.0).embedding_table.weight.shape == (10, 4)
    # eval mode never drops
    assert_close(emb(labels, train=False), emb.embedding_table(labels))
