"""The T5 v1.1 / mT5 encoder: PixArt's and SD3's T5-XXL, Hunyuan-DiT's mT5-XL.

Papers: T5 (Raffel et al., arXiv:1910.10683) — relative position buckets §2.1, the encoder;
T5 v1.1 (GLU feed-forward: Shazeer, arXiv:2002.05202, "GEGLU"); mT5 (Xue et al., arXiv:2010.11934),
the same network with a 250k multilingual vocabulary. Attribute names are Hugging Face
transformers' `T5EncoderModel` keys, which is also the layout of `DeepFloyd/t5-v1_1-xxl`,
PixArt's `text_encoder/`, SD3's `text_encoder_3/` and `text_encoders/t5xxl_fp16.safetensors`,
Hunyuan-DiT's `t2i/mt5/` (loader: `weights_loader/t5.py`).

    ids (B, L) --shared--> x (B, L, D)                       no position embedding: position lives
    bias = relative_attention_bias(bucket(j - i))  (1, nh, L, L)     only in this bias, computed
           + padding mask                          (B, nh, L, L)     once and shared by all blocks
    N x block:  x = x + Attention(RMSNorm(x), bias)          softmax(q k^T + bias) v, NOT / sqrt(hd)
                x = x + wo(gelu(wi_0 RMSNorm(x)) * wi_1 RMSNorm(x))     gated-GELU feed-forward
    out = RMSNorm(x)                                         final_layer_norm

Not what the Transformer paper does: RMSNorm (no mean subtraction, no bias, no biases anywhere),
no 1/sqrt(hd) scaling (the initialisation absorbed it), pre-norm, relative instead of absolute
positions, bidirectional attention (every token sees every other; CLIP's is causal).

fp16 policy. T5 v1.1 was trained in bf16; in fp16 its feed-forward output (`wo`) and then the
residual stream grow past fp16's largest number, 65504: inf, then NaN, then black images. minidit
keeps the `wo` weights in fp32 when asked for fp16 (`t5_weight_dtype`, used by `cast_t5` and by
`weights_loader.load_t5(..., dtype=torch.float16)`); `wo` then returns fp32 and, by type
promotion, the residual stream stays fp32 from the first block on, while the big matmuls run in
fp16. bf16 has fp32's range and needs no guard (prefer it on GPUs that have it); fp32 is what
PixArt and SD3's reference code use. `tests/test_text_t5.py` provokes the overflow.

Glossary (paper symbol | code name | checkpoint key)
  d_model            | d_model                | shared.weight.shape[1]
  d_kv (head dim)    | d_kv                   | SelfAttention.q.weight.shape[0] / num_heads
  d_ff               | d_ff                   | DenseReluDense.wi_0.weight.shape[0]
  b(i-j) (32 buckets)| relative_attention_bias| encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight

Shape legend: B batch, L tokens, D = d_model, nh heads, hd = d_kv, F = d_ff.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention, merge_heads, split_heads
from .common import TextEncoderOutput, check_ids, padding_bias


@dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 4096                         # D
    d_kv: int = 64                              # head dim (nh * d_kv need not equal D)
    d_ff: int = 10240                           # F
    num_layers: int = 24                        # N (encoder blocks)
    num_heads: int = 64                         # nh
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"       # T5 v1.1 / mT5; the original T5's "relu" is not built

    def __post_init__(self):
        if self.feed_forward_proj != "gated-gelu":
            raise ValueError(f"feed_forward_proj={self.feed_forward_proj!r}: minidit builds the T5 v1.1 / mT5 "
                             "encoder (gated-gelu); the original T5 (relu) is not used by any diffusion model")


# --------------------------------------------------------------------------------------------
# Relative position buckets
# --------------------------------------------------------------------------------------------

def relative_position_bucket(relative_position, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128):
    """Map a key-minus-query offset j - i to one of `num_buckets` buckets (T5 paper §2.1).

    Bidirectional (the encoder): half the buckets for j > i, half for j <= i. Within each half,
    offsets 0 .. max_exact-1 (max_exact = a quarter of the buckets) get one bucket each; larger
    offsets share buckets whose width grows logarithmically up to `max_distance`, and everything
    farther lands in the last bucket. With 32 buckets: 8 exact offsets, then 8 log-spaced ones.
    """
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).long() * num_buckets
        n = relative_position.abs()
    else:                                                          # decoder: only j <= i exists
        n = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    # max_exact + log(n / max_exact) / log(max_distance / max_exact) * (buckets - max_exact), floored
    log_ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(n < max_exact, n, large)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def t5_weight_dtype(key: str, dtype: torch.dtype) -> torch.dtype:
    """The fp16 policy (module docstring): the dtype the weight `key` should have when the model
    is meant to run in `dtype`. Only fp16 is special: the feed-forward output weights stay fp32."""
    if dtype == torch.float16 and ".DenseReluDense.wo." in f".{key}":
        return torch.float32
    return dtype


def cast_t5(model: "T5EncoderModel", dtype: torch.dtype) -> "T5EncoderModel":
    """Cast a T5 encoder in place for inference in `dtype`, following the fp16 policy."""
    for name, p in model.named_parameters():
        p.data = p.data.to(t5_weight_dtype(name, dtype))
    return model


def guard_fp16(model: "T5EncoderModel") -> "T5EncoderModel":
    """Apply the fp16 policy to a T5 whose feed-forward output weights are fp16 (e.g. after a plain
    `.half()`): pipelines call this so that T5 never runs in unguarded fp16. A no-op otherwise."""
    if any(p.dtype == torch.float16 for n, p in model.named_parameters() if ".DenseReluDense.wo." in f".{n}"):
        cast_t5(model, torch.float16)
    return model


class T5LayerNorm(nn.Module):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * weight — no mean subtraction, no bias.

    Computed in fp32 whatever the input dtype, then cast to the weight's dtype (so a fp32 residual
    stream feeds fp16 matmuls under the fp16 policy)."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x):
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(self.weight.dtype)


class T5Attention(nn.Module):
    """Multi-head self-attention without biases and without the 1/sqrt(hd) scale.

    Only the first block owns `relative_attention_bias` (num_buckets x nh): the model computes the
    position bias once from it (`position_bias`) and passes it to every block."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False):
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads = config.num_heads
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)

    def position_bias(self, query_length: int, key_length: int):
        """b[h, i, j] = relative_attention_bias[bucket(j - i), h]  ->  (1, nh, Lq, Lk)."""
        device = self.relative_attention_bias.weight.device
        i = torch.arange(query_length, device=device)[:, None]
        j = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(j - i, True, self.num_buckets, self.max_distance)  # (Lq, Lk)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]                  # (1, nh, Lq, Lk)

    def forward(self, x, bias):
        q = split_heads(self.q(x), self.num_heads)                                 # (B, nh, L, hd)
        k = split_heads(self.k(x), self.num_heads)
        v = split_heads(self.v(x), self.num_heads)
        out = attention(q, k, v, bias.to(q.dtype), scale=1.0)                      # (B, nh, L, hd)
        return self.o(merge_heads(out))                                            # (B, L, D)


class T5LayerSelfAttention(nn.Module):
    """Pre-norm residual self-attention: x + SelfAttention(layer_norm(x))."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False):
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x, bias):
        return x + self.SelfAttention(self.layer_norm(x), bias)


class T5DenseGatedActDense(nn.Module):
    """Gated-GELU feed-forward (GEGLU): wo(gelu_tanh(wi_0 x) * wi_1 x). Key name: DenseReluDense."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x):
        h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)                # (B, L, F)
        # fp16 policy: `wo` may be fp32 while the rest is fp16; its output is then fp32.
        return self.wo(h.to(self.wo.weight.dtype))                                 # (B, L, D)


class T5LayerFF(nn.Module):
    """Pre-norm residual feed-forward: x + DenseReluDense(layer_norm(x))."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x):
        # Under the fp16 policy the second term is fp32, so the sum — the residual stream — is fp32.
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    """One encoder block: `layer.0` self-attention, `layer.1` feed-forward (the checkpoint's names)."""

    def __init__(self, config: T5Config, has_relative_attention_bias: bool = False):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, has_relative_attention_bias),
                                    T5LayerFF(config)])

    def forward(self, x, bias):
        return self.layer[1](self.layer[0](x, bias))


class T5Stack(nn.Module):
    """The encoder blocks and the final RMSNorm (key prefix `encoder.`)."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.block = nn.ModuleList([T5Block(config, has_relative_attention_bias=(i == 0))
                                    for i in range(config.num_layers)])
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x, bias, output_hidden_states: bool = False):
        hidden = [x]                         # kept only when asked for: each is (B, L, D)
        for block in self.block:
            x = block(x, bias)                                                     # (B, L, D)
            if output_hidden_states:
                hidden.append(x)
        x = self.final_layer_norm(x)
        # As transformers: hidden_states = (embeddings, block 0 .. N-2 outputs, final-normed output).
        hidden[-1] = x
        return TextEncoderOutput(last_hidden_state=x,
                                 hidden_states=tuple(hidden) if output_hidden_states else None)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class T5EncoderModel(nn.Module):
    """The T5 v1.1 / mT5 encoder: token ids -> contextual embeddings (B, L, D).

    forward(input_ids, attention_mask=None, output_hidden_states=False) -> TextEncoderOutput.
    `attention_mask` (B, L), 1 = token, 0 = padding: PixArt passes it; SD3 does not (its padding
    tokens are attended, and its weights were trained that way) — see `minidit.text.common`.
    """

    def __init__(self, config: T5Config = T5Config()):
        super().__init__()
        self.config = config
        # transformers also stores `encoder.embed_tokens.weight`, tied to this one; the loader
        # checks the two are equal and keeps one.
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config)

    def position_bias(self, length: int):
        """(1, nh, L, L), from the first block's table; shared by every block."""
        return self.encoder.block[0].layer[0].SelfAttention.position_bias(length, length)

    def forward(self, input_ids, attention_mask=None, output_hidden_states: bool = False):
        check_ids(input_ids, self.config.vocab_size, "T5EncoderModel")
        x = self.shared(input_ids)                                                 # (B, L, D)
        bias = self.position_bias(input_ids.shape[1])                              # (1, nh, L, L)
        if attention_mask is not None:
            bias = bias + padding_bias(attention_mask, bias.dtype)                 # (B, nh, L, L)
        return self.encoder(x, bias, output_hidden_states)


# --------------------------------------------------------------------------------------------
# Presets (the `config.json` of each released checkpoint)
# --------------------------------------------------------------------------------------------

T5_TINY = T5Config(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)  # tests
T5_V1_1_SMALL = T5Config(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6)
T5_V1_1_BASE = T5Config(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
T5_V1_1_XXL = T5Config(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)  # PixArt, SD3
MT5_BASE = T5Config(vocab_size=250112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12)
MT5_XL = T5Config(vocab_size=250112, d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_heads=32)  # Hunyuan

PRESETS = {
    "t5-tiny": T5_TINY,
    "t5-v1_1-small": T5_V1_1_SMALL,
    "t5-v1_1-base": T5_V1_1_BASE,
    "t5-v1_1-xxl": T5_V1_1_XXL,
    "mt5-base": MT5_BASE,
    "mt5-xl": MT5_XL,
}
