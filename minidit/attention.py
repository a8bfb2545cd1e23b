"""Attention: one function, two paths, and the attention/MLP modules the DiT family shares.

    Attention(Q, K, V) = softmax(Q K^T * scale + mask) V          (Vaswani et al., arXiv:1706.03762)

`attention()` has a *manual* path that writes this formula out (and materialises the
B x nh x Tq x Tk score matrix: 8 GiB per layer for a 2048^2 PixArt image in fp16) and an *SDPA*
path, `torch.nn.functional.scaled_dot_product_attention`, which computes the same numbers with a
fused kernel in O(T) memory (flash / memory-efficient attention). `tests/test_attention.py` shows
they agree; `benchmarks/attention_memory.py` shows the memory difference.

Module names follow the official checkpoints:
    Attention               timm `Attention`: fused `qkv` [3D, D] + `proj`   (DiT, PixArt self-attn)
    MultiHeadCrossAttention PixArt: `q_linear`, `kv_linear` [2D, D_ctx], `proj`
    Mlp                     timm `Mlp`: `fc1`, GELU(tanh), `fc2`

Shape legend: B batch, T query tokens, L key/context tokens, D width, nh heads, hd head dim.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("sdpa", "manual")
_backend = "sdpa"


@contextlib.contextmanager
def attention_backend(name: str):
    """Temporarily choose the path every `attention()` call takes: `"sdpa"` (default) or `"manual"`."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {BACKENDS}")
    old, _backend = _backend, name
    try:
        yield
    finally:
        _backend = old


def attention(q, k, v, mask=None, *, scale=None, backend=None):
    """softmax(q k^T * scale + mask) v.

    q: (B, nh, T, hd); k, v: (B, nh, L, hd); returns (B, nh, T, hd).
    mask: None, a bool tensor (True = may attend) or a float tensor added to the scores, either
          broadcastable to (B, nh, T, L).
    scale: defaults to 1/sqrt(hd); T5 uses 1.0 (its weights absorb the scaling).
    backend: "sdpa" or "manual"; None uses the current default (see `attention_backend`).
    """
    backend = backend or _backend
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if backend != "manual":
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale                    # (B, nh, T, L)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype)
    return weights @ v                                            # (B, nh, T, hd)


def split_heads(x, num_heads):
    """(B, T, nh*hd) -> (B, nh, T, hd)"""
    B, T, _ = x.shape
    return x.view(B, T, num_heads, -1).transpose(1, 2)


def per_token_chunks(fn, x, chunk: int):
    """fn(x) for a per-token function fn (an MLP), run on `chunk` tokens at a time: (B, T, D) -> (B, T, D_out).

    Feed-forward chunking: the same numbers as fn(x), but fn's wide hidden state (4x the width in an
    MLP) exists for one chunk only. x of at most `chunk` tokens goes through in one call."""
    if x.shape[1] <= chunk:
        return fn(x)
    first = fn(x[:, :chunk])
    out = first.new_empty(*x.shape[:2], first.shape[-1])
    out[:, :chunk] = first
    del first
    for i in range(chunk, x.shape[1], chunk):
        out[:, i:i + chunk] = fn(x[:, i:i + chunk])
    return out


def merge_heads(x):
    """(B, nh, T, hd) -> (B, T, nh*hd)"""
    B, nh, T, hd = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hd)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm `Attention`, as in DiT/PixArt)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads)   # (B, T, 3, nh, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                    # 3 x (B, nh, T, hd)
        x = merge_heads(attention(q, k, v, mask))                                # (B, T, D)
        return self.proj(x)


class MultiHeadCrossAttention(nn.Module):
    """Image tokens (queries) attend to caption tokens (keys/values) — PixArt's cross-attention.

    `mask` is a (B, L) bool key-padding mask (True = real caption token).
    """

    def __init__(self, d_model: int, num_heads: int, context_dim: int | None = None):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"width {d_model} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_linear = nn.Linear(d_model, d_model)
        self.kv_linear = nn.Linear(context_dim or d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, context, mask=None):
        B, T, D = x.shape
        L = context.shape[1]
        q = split_heads(self.q_linear(x), self.num_heads)                       # (B, nh, T, hd)
        kv = self.kv_linear(context).view(B, L, 2, self.num_heads, D // self.num_heads)
        k, v = kv.permute(2, 0, 3, 1, 4)                                        # 2 x (B, nh, L, hd)
        if mask is not None:
            mask = mask[:, None, None, :].to(torch.bool)                        # (B, 1, 1, L)
        x = merge_heads(attention(q, k, v, mask))                                # (B, T, D)
        return self.proj(x)


class Mlp(nn.Module):
    """Two-layer feed-forward network with GELU (timm `Mlp`; tanh approximation as in DiT/PixArt)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None,
                 approximate: str = "tanh"):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
