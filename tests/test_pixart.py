"""PixArt model: semantics, presets against the documented table, KV compression and QK-norm."""
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from minidit.attention import attention_backend
from minidit.dit import modulate
from minidit.pixart import (PRESETS, AttentionKVCompress, KVCompressConfig, PixArt, PixArtConfig, t2i_modulate)

from helpers import FP32, assert_parity, perturb

TINY = PixArtConfig(input_size=16, hidden_size=24, depth=2, num_heads=2, caption_channels=32, model_max_length=7)


def tiny(**kw):
    torch.manual_seed(0)
    model = PixArt(PixArtConfig(**{**TINY.__dict__, **kw}))
    return perturb(model, seed=None, scale=0.05)   # the official init zeroes the output: make it non-trivial


def test_presets_match_the_documented_checkpoint_table():
    # (latent side, T5 tokens, pe_interpolation, micro-conditions): docs/checkpoints.md#pixart-released-checkpoints
    table = {"PixArt-XL-2-512x512": (64, 120, 1, False), "PixArt-XL-2-1024-MS": (128, 120, 2, True),
             "PixArt-Sigma-XL-2-256x256": (32, 300, 0.5, False), "PixArt-Sigma-XL-2-512-MS": (64, 300, 1, False),
             "PixArt-Sigma-XL-2-1024-MS": (128, 300, 2, False), "PixArt-Sigma-XL-2-2K-MS": (256, 300, 4, False)}
    assert set(PRESETS) == set(table)
    for name, (side, L, pe, micro) in table.items():
        c = PRESETS[name]
        assert (c.input_size, c.model_max_length, c.pe_interpolation, c.micro_condition) == (side, L, pe, micro)
        assert (c.depth, c.hidden_size, c.num_heads, c.patch_size, c.caption_channels) == (28, 1152, 16, 2, 4096)
        assert c.base_size / c.pe_interpolation == 32        # every model sees positions in [0, 32)
        assert c.kv_compress_config is None and not c.qk_norm


def test_parameter_counts_on_meta():
    with torch.device("meta"):
        sigma, alpha = PixArt(PRESETS["PixArt-Sigma-XL-2-1024-MS"]), PixArt(PRESETS["PixArt-XL-2-1024-MS"])
    n = sum(p.numel() for p in sigma.parameters())
    assert n == 610_856_096                                  # ~610.9 M: docs/checkpoints.md#pixart-architecture
    size_embedders = 2 * (256 * 384 + 384 + 384 * 384 + 384)
    assert sum(p.numel() for p in alpha.parameters()) == n + size_embedders


def test_t2i_modulate_is_dits_modulate_with_a_token_axis():
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 8)
    torch.testing.assert_close(t2i_modulate(x, shift[:, None], scale[:, None]), modulate(x, shift, scale))
    torch.testing.assert_close(t2i_modulate(torch.ones(1, 1, 2), torch.tensor([[[1.0, 2.0]]]),
                                            torch.tensor([[[0.5, -1.0]]])), torch.tensor([[[2.5, 2.0]]]))


def test_pos_embed_matches_diffusers_for_any_grid():
    from diffusers.models.embeddings import get_2d_sincos_pos_embed as ref
    for preset, (h, w) in [("PixArt-XL-2-1024-MS", (48, 80)), ("PixArt-Sigma-XL-2-256x256", (16, 16)),
                           ("PixArt-Sigma-XL-2-2K-MS", (96, 160))]:
        c = PRESETS[preset]
        with torch.device("meta"):
            model = PixArt(c)
        expected = ref(c.hidden_size, (h, w), base_size=c.base_size, interpolation_scale=c.pe_interpolation)
        assert_parity(model.pos_embed(h, w)[0], expected.float(), tol=FP32, what=f"{preset} {h}x{w} table vs diffusers")


def test_forward_shapes_and_official_caption_shape():
    model = tiny()
    x, y, t = torch.randn(2, 4, 8, 12), torch.randn(2, 7, 32), torch.tensor([0, 999])
    out = model(x, t, y)
    assert out.shape == (2, 8, 8, 12)
    torch.testing.assert_close(model(x, t, y[:, None]), out)       # the official (B, 1, L, C) layout
    assert model(x, torch.tensor([10.5, 500.25]), y).shape == out.shape   # fractional timesteps


def test_caption_mask_hides_padding_tokens():
    model = tiny()
    x, y, t = torch.randn(2, 4, 8, 8), torch.randn(2, 7, 32), torch.tensor([5, 700])
    mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4])
    out = model(x, t, y, mask)
    y2 = y.clone()
    y2[1, 3:] = 100 * torch.randn(4, 32)                           # only padded tokens change
    torch.testing.assert_close(model(x, t, y2, mask), out)
    # the same as giving the second image only its 3 real tokens
    torch.testing.assert_close(model(x[1:], t[1:], y[1:, :3])[0], out[1])
    assert not torch.allclose(model(x, t, y2), out)               # without the mask they matter
    with pytest.raises(ValueError, match="all zeros"):
        model(x, t, y, torch.tensor([[1] * 7, [0] * 7]))
    # a mask of fewer rows is repeated (the official CFG quirk): tiled like `mask.repeat(2, 1)`, so the
    # batch [uncond_1, uncond_2, cond_1, cond_2] gets [mask_1, mask_2, mask_1, mask_2]
    torch.testing.assert_close(model(x, t, y, mask[1:]), model(x, t, y, mask[[1, 1]]))
    x2, t2, y2 = torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, y])
    torch.testing.assert_close(model(x2, t2, y2, mask), model(x2, t2, y2, mask[[0, 1, 0, 1]]))


def test_micro_conditions():
    model = tiny(micro_condition=True)
    assert hasattr(model, "csize_embedder") and model.csize_embedder.mlp[0].weight.shape == (8, 256)
    x, y, t = torch.randn(2, 4, 8, 12), torch.randn(2, 7, 32), torch.tensor([5, 700])
    with pytest.raises(ValueError, match="img_hw"):
        model(x, t, y)
    hw, ar = torch.tensor([[64.0, 96.0]]), torch.tensor([64 / 96])
    out = model(x, t, y, img_hw=hw, aspect_ratio=ar)               # one row for the batch is repeated
    torch.testing.assert_close(out, model(x, t, y, img_hw=hw.repeat(2, 1), aspect_ratio=ar.repeat(2)[:, None]))
    assert not torch.allclose(out, model(x, t, y, img_hw=hw * 2, aspect_ratio=ar))
    with pytest.raises(ValueError, match="divisible by 3"):
        PixArtConfig(hidden_size=32, num_heads=2, micro_condition=True)


def test_null_caption_and_caption_dropout():
    model = tiny()
    y = torch.randn(3, 7, 32)
    dropped = model.y_embedder.token_drop(y, force_drop_ids=torch.tensor([0, 1, 0]))
    torch.testing.assert_close(dropped[1], model.y_embedder.y_embedding)
    torch.testing.assert_close(dropped[[0, 2]], y[[0, 2]])
    model.y_embedder.has_null_caption = False
    with pytest.raises(RuntimeError, match="null caption"):
        model.y_embedder.null_caption()


# ---------------------------------------------------------------------------------------------
# Σ options: KV compression and QK-norm (no released checkpoint uses them)
# ---------------------------------------------------------------------------------------------


def test_kv_compression_keys_and_forward():
    kv = {"sampling": "conv", "scale_factor": 2, "kv_compress_layer": [1]}      # the official dict form
    model = tiny(kv_compress_config=kv, qk_norm=True)
    assert model.config.kv_compress_config == KVCompressConfig("conv", 2, (1,))
    keys = set(model.state_dict())
    assert {"blocks.1.attn.sr.weight", "blocks.1.attn.norm.weight", "blocks.0.attn.q_norm.weight"} <= keys
    assert "blocks.0.attn.sr.weight" not in keys
    assert model.blocks[1].attn.sr.weight.shape == (24, 1, 2, 2)                  # depthwise
    out = model(torch.randn(1, 4, 8, 12), torch.tensor([3]), torch.randn(1, 7, 32))   # 4 x 6 token grid
    assert out.shape == (1, 8, 8, 12) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 4, 6, 12), torch.tensor([3]), torch.randn(1, 7, 32))    # 3 x 6 grid, s = 2
    with pytest.raises(ValueError, match="kv_compress_layer"):
        PixArtConfig(depth=2, kv_compress_config=KVCompressConfig("conv", 2, (5,)))
    with pytest.raises(ValueError, match="sampling"):
        KVCompressConfig("bilinear", 2)


def test_kv_compression_samplings_by_hand():
    x = torch.randn(2, 6 * 8, 16)                                                  # (B, h*w, D), h=6, w=8
    grid = x.transpose(1, 2).reshape(2, 16, 6, 8)
    conv = AttentionKVCompress(16, 2, "conv", 2)             # initialised as a 2x2 average (+ LayerNorm)
    expected = F.layer_norm(F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2), (16,))
    torch.testing.assert_close(conv.downsample_2d(x, (6, 8)), expected)
    ave, uniform = AttentionKVCompress(16, 2, "ave", 2), AttentionKVCompress(16, 2, "uniform", 2)
    sub = grid[:, :, ::2, ::2].flatten(2).transpose(1, 2)
    torch.testing.assert_close(uniform.downsample_2d(x, (6, 8)), sub)
    torch.testing.assert_close(ave.downsample_2d(x, (6, 8)), sub)   # official "ave" = nearest = subsample


class _LargestTensor(TorchDispatchMode):
    """Records the size of the largest tensor any op produces (the attention score matrix here)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.bytes = max(self.bytes, t.numel() * t.element_size())
        return out


@pytest.mark.parametrize("s", [2, 4])
def test_kv_compression_cuts_attention_memory_and_flops(s):
    torch.manual_seed(0)
    x, hw = torch.randn(1, 32 * 32, 16), (32, 32)                                  # 1024 tokens
    full, small = AttentionKVCompress(16, 2), AttentionKVCompress(16, 2, "conv", s)
    cost = {}
    with attention_backend("manual"), torch.no_grad():                             # materialises the scores
        for name, attn in [("full", full), ("small", small)]:
            with _LargestTensor() as mem, FlopCounterMode(display=False) as flops:
                attn(x, hw)
            cost[name] = (mem.bytes, flops.get_total_flops())
    assert cost["full"][0] == 1 * 2 * 1024 * 1024 * 4                              # (B, nh, T, T) fp32 scores
    assert cost["small"][0] == cost["full"][0] // s**2                             # (B, nh, T, T/s^2)
    attn_flops = 2 * 2 * 1024 * 1024 * 8 * 2                                       # QK^T and PV, nh=2, hd=8
    assert cost["full"][1] - cost["small"][1] >= attn_flops * (1 - 1 / s**2) * 0.99


def test_qk_norm_by_hand():
    torch.manual_seed(0)
    attn = AttentionKVCompress(16, 2, qk_norm=True)
    with torch.no_grad():
        for norm in (attn.q_norm, attn.k_norm):
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k = F.layer_norm(q, (16,), attn.q_norm.weight, attn.q_norm.bias), F.layer_norm(k, (16,), attn.k_norm.weight,
                                                                                     attn.k_norm.bias)
    heads = [torch.softmax(q[..., i:i + 8] @ k[..., i:i + 8].transpose(1, 2) / 8**0.5, -1) @ v[..., i:i + 8]
             for i in (0, 8)]
    assert_parity(attn(x), attn.proj(torch.cat(heads, -1)), tol=FP32, what="QK-norm attention vs by hand")
