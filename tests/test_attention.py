"""Tier 1: the manual and SDPA attention paths agree, and the modules match independent references."""
import pytest
import torch

from minidit.attention import Attention, Mlp, MultiHeadCrossAttention, attention, attention_backend

from helpers import FP32, assert_parity


def _qkv(B=2, nh=3, T=5, L=7, hd=8):
    return torch.randn(B, nh, T, hd), torch.randn(B, nh, L, hd), torch.randn(B, nh, L, hd)


def test_manual_is_the_formula():
    q, k, v = _qkv()
    expected = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    assert_parity(attention(q, k, v, backend="manual"), expected, tol=FP32, what="manual attention vs the formula")


@pytest.mark.parametrize("kind", ["none", "bool", "float", "scale"])
def test_manual_and_sdpa_agree(kind):
    q, k, v = _qkv()
    mask, scale = None, None
    if kind == "bool":
        mask = torch.rand(2, 1, 1, 7) > 0.3
        mask[..., 0] = True                              # every query keeps at least one key
    elif kind == "float":
        mask = torch.randn(1, 3, 5, 7)
    elif kind == "scale":
        scale = 1.0
    a = attention(q, k, v, mask, scale=scale, backend="manual")
    b = attention(q, k, v, mask, scale=scale, backend="sdpa")
    assert_parity(a, b, tol=FP32, what=f"manual vs SDPA ({kind})")


def test_backend_context_manager():
    q, k, v = _qkv()
    with attention_backend("manual"):
        a = attention(q, k, v)
    assert_parity(a, attention(q, k, v), tol=FP32, what="manual backend vs the default")
    with pytest.raises(ValueError, match="unknown attention backend"):
        with attention_backend("flash3"):
            pass


def test_self_attention_matches_torch_multihead():
    torch.manual_seed(0)
    ours = Attention(24, 4)
    ref = torch.nn.MultiheadAttention(24, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 10, 24)
    assert_parity(ours(x), ref(x, x, x, need_weights=False)[0], tol=FP32, what="Attention vs nn.MultiheadAttention")


def test_cross_attention_mask_equals_dropping_padded_tokens():
    torch.manual_seed(0)
    attn = MultiHeadCrossAttention(16, 2, context_dim=12)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 9, 12)
    lengths = [4, 9]
    mask = torch.arange(9)[None] < torch.tensor(lengths)[:, None]      # (B, L)
    out = attn(x, ctx, mask)
    for b, n in enumerate(lengths):                                      # run each caption without padding
        assert_parity(out[b:b + 1], attn(x[b:b + 1], ctx[b:b + 1, :n]), tol=FP32, what=f"masked vs unpadded, row {b}")


def test_mlp_is_gelu_tanh():
    mlp = Mlp(6, 10)
    x = torch.randn(3, 6)
    h = x @ mlp.fc1.weight.T + mlp.fc1.bias
    h = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h**3)))
    assert_parity(mlp(x), h @ mlp.fc2.weight.T + mlp.fc2.bias, tol=FP32, what="Mlp vs the tanh-GELU formula")


def test_bad_widths_are_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        Attention(10, 3)
