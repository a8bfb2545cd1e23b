"""Spacetime building blocks (minidit/spacetime.py, embed.pos_embed_temporal / rope_temporal), each
against an independent computation: a Conv3d and einops, explicit per-frame / per-position loops,
sin-cos values derived by hand, and rotary_embedding_torch (the package Open-Sora 1.2 uses)."""
import math

import pytest
import torch
from einops import rearrange
from torch import nn

from helpers import EXACT, FP32, FP32_ELEMENTWISE, assert_parity, require
from minidit.attention import Attention
from minidit.embed import apply_rope, pos_embed_temporal, rope_temporal
from minidit.errors import InputError
from minidit.spacetime import (PatchEmbed3D, attention_cost, from_spatial, from_temporal, patchify3d,
                               spacetime_attention, spatial_attention, temporal_attention, to_spatial,
                               to_temporal, token_grid, unpatchify3d)

torch.set_num_threads(1)
PATCHES = [(1, 2, 2), (2, 2, 2), (2, 1, 3)]


@pytest.mark.parametrize("patch", PATCHES)
def test_patchify3d_times_conv3d_weight_is_conv3d(patch):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, 6)
    embed = PatchEmbed3D(patch, 3, 8)
    conv = nn.functional.conv3d(x, embed.proj.weight, embed.proj.bias, stride=patch)   # (B, D, F, H, W)
    expected = rearrange(conv, "b d f h w -> b (f h w) d")                               # T-H-W token order
    assert_parity(embed(x), expected, tol=EXACT, what="PatchEmbed3D vs F.conv3d + einops")
    ours = patchify3d(x, patch) @ embed.proj.weight.flatten(1).T + embed.proj.bias
    assert_parity(ours, expected, tol=FP32, what="patchify3d @ W vs conv3d")


@pytest.mark.parametrize("patch", PATCHES)
def test_unpatchify3d_is_the_official_rearrange_and_inverts_patchify(patch):
    pt, ph, pw = patch
    x = torch.randn(2, 5, 4 * pt, 3 * ph, 2 * pw)
    F, H, W = token_grid(x.shape[2:], patch)
    tokens = torch.randn(2, F * H * W, pt * ph * pw * 5)
    official = rearrange(tokens, "B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p) (N_h H_p) (N_w W_p)",
                         N_t=F, N_h=H, N_w=W, T_p=pt, H_p=ph, W_p=pw, C_out=5)
    assert torch.equal(unpatchify3d(tokens, F, H, W, patch, 5), official)
    # patchify3d orders a token (c, dt, di, dj); the final layer's order is (dt, di, dj, c): reorder, round trip
    p = rearrange(patchify3d(x, patch), "b n (c t h w) -> b n (t h w c)", c=5, t=pt, h=ph, w=pw)
    assert torch.equal(unpatchify3d(p, F, H, W, patch, 5), x)


def test_patch_errors_are_clear():
    with pytest.raises(InputError, match="not divisible by the tubelet"):
        PatchEmbed3D((2, 2, 2), 4, 8)(torch.randn(1, 4, 3, 4, 4))
    with pytest.raises(InputError, match=r"\(B, C, frames"):
        PatchEmbed3D((1, 2, 2), 4, 8)(torch.randn(1, 4, 4, 4))
    with pytest.raises(InputError, match="cannot unpatchify"):
        unpatchify3d(torch.randn(1, 10, 32), 2, 2, 2, (1, 2, 2), 8)


def test_factorized_reshapes_by_index():
    B, F, S, D = 2, 3, 5, 4
    x = torch.randn(B, F * S, D)
    xs, xt = to_spatial(x, F, S), to_temporal(x, F, S)
    for b in range(B):
        for f in range(F):
            for s in range(S):
                assert torch.equal(xs[b * F + f, s], x[b, f * S + s])      # sequence = one frame
                assert torch.equal(xt[b * S + s, f], x[b, f * S + s])      # sequence = one position
    assert torch.equal(from_spatial(xs, F, S), x) and torch.equal(from_temporal(xt, F, S), x)
    with pytest.raises(InputError, match="F\\*S"):
        to_temporal(x, 4, S)


def test_factorized_attention_equals_explicit_loops():
    torch.manual_seed(1)
    B, F, H, W, D = 2, 3, 2, 3, 16
    S = H * W
    attn = Attention(D, 4).eval()
    x = torch.randn(B, F * S, D)
    tpe = torch.randn(1, F, D)
    with torch.no_grad():
        ours_s = spatial_attention(attn, x, F, S)
        ours_t = temporal_attention(attn, x, F, S, tpe)
        ours_full = spacetime_attention(attn, x)
        grid = x.reshape(B, F, S, D)
        loop_s = torch.stack([torch.stack([attn(grid[b, f][None])[0] for f in range(F)]) for b in range(B)])
        loop_t = torch.stack([torch.stack([attn((grid[b, :, s] + tpe[0])[None])[0] for s in range(S)], dim=1)
                              for b in range(B)])                           # (B, F, S, D)
        full = torch.stack([attn(x[b][None])[0] for b in range(B)])
    assert_parity(ours_s, loop_s.reshape(B, F * S, D), tol=FP32, what="spatial attention vs per-frame loop")
    assert_parity(ours_t, loop_t.reshape(B, F * S, D), tol=FP32, what="temporal attention vs per-position loop")
    assert_parity(ours_full, full, tol=FP32, what="full spacetime attention vs per-clip loop")
    # and they differ from each other: a spatial attention that leaked across frames would not
    assert (ours_s - ours_full).abs().max() > 1e-2


def test_cost_model_by_hand():
    # STDiT-XL/2 at 16 x 256^2: F = 16 frames, S = 16 * 16 = 256 tokens per frame, D = 1152, 16 heads.
    F, S, D, nh = 16, 256, 1152, 16
    full, fact = attention_cost(F, S, D, nh, "full"), attention_cost(F, S, D, nh, "factorized")
    assert full.score_elements == 16 * 4096**2                  # 268 M scores: 512 MiB in fp16, per layer
    assert full.score_bytes == 512 * 2**20
    assert fact.score_elements == 16 * 16 * 256**2              # spatial (16 frames x 16 heads x 256^2) > temporal
    assert full.score_flops == 4 * 4096**2 * 1152
    assert fact.score_flops == 4 * (16 * 256**2 + 256 * 16**2) * 1152
    assert full.score_flops / fact.score_flops == pytest.approx(4096**2 / (16 * 256**2 + 256 * 256), rel=1e-12)
    assert fact.projection_flops == 2 * full.projection_flops == 2 * 8 * 4096 * 1152**2
    assert attention_cost(F, S, D, nh, batch=2).flops == 2 * fact.flops
    with pytest.raises(InputError, match="attention mode"):
        attention_cost(F, S, D, nh, "windowed")


def test_pos_embed_temporal_hand_values():
    D, F = 8, 5
    table = pos_embed_temporal(D, F)
    assert table.shape == (F, D) and table.dtype == torch.float32
    # omega_k = 10000^(-k/4), k = 0..3; frame f: [sin(f w0) .. sin(f w3), cos(f w0) .. cos(f w3)]
    omegas = [1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75]
    expected = torch.tensor([[math.sin(f * w) for w in omegas] + [math.cos(f * w) for w in omegas] for f in range(F)])
    assert_parity(table, expected, tol=FP32_ELEMENTWISE, what="temporal sin-cos")
    assert table[0, :4].abs().max() == 0 and (table[0, 4:] == 1).all()          # frame 0: sin 0, cos 1
    assert_parity(table[3, 0], torch.tensor(math.sin(3.0)), tol=FP32_ELEMENTWISE)   # sin FIRST, base 10000
    half = pos_embed_temporal(D, F, scale=2.0)                                      # time_scale: frame f at f / 2
    assert_parity(half[2], expected[1], tol=FP32_ELEMENTWISE, what="time_scale 2")


def _rope_by_formula(x, theta=10000.0):
    """RoPE on (..., F, hd) written out: pair (2i, 2i+1) of frame f turns by f * theta^(-2i/hd)."""
    F, hd = x.shape[-2:]
    out = torch.empty_like(x)
    for f in range(F):
        for i in range(hd // 2):
            a = f * theta ** (-2 * i / hd)
            c, s = math.cos(a), math.sin(a)
            x0, x1 = x[..., f, 2 * i], x[..., f, 2 * i + 1]
            out[..., f, 2 * i], out[..., f, 2 * i + 1] = x0 * c - x1 * s, x0 * s + x1 * c
    return out


def test_rope_temporal_matches_the_formula_and_rotary_embedding_torch():
    torch.manual_seed(2)
    q = torch.randn(6, 2, 5, 8)                                   # (B*S, nh, F, hd)
    cos, sin = rope_temporal(8, 5)
    ours = apply_rope(q, cos, sin)
    assert_parity(ours, _rope_by_formula(q), tol=FP32_ELEMENTWISE, what="temporal RoPE vs the formula")
    rotary = require("rotary_embedding_torch")
    theirs = rotary.RotaryEmbedding(dim=8).rotate_queries_or_keys(q)   # what Open-Sora 1.2 calls
    assert_parity(ours, theirs, tol=FP32_ELEMENTWISE, what="temporal RoPE vs rotary_embedding_torch")
    # relative: the score of frames (f, g) depends on f - g only
    k = torch.randn(8)
    qq = apply_rope(k.expand(5, 8).clone(), cos, sin)
    assert_parity(qq[1] @ qq[3], qq[0] @ qq[2], tol=FP32_ELEMENTWISE, what="RoPE is relative")
