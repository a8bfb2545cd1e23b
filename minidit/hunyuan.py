"""Hunyuan-DiT: cross-attention to two text encoders, 2-D RoPE and U-ViT long skips.

Paper: Li et al., "Hunyuan-DiT: A Powerful Multi-Resolution Diffusion Transformer with Fine-Grained
Chinese Understanding" (arXiv:2405.08748, §2). Official code: Tencent/HunyuanDiT
`hydit/modules/models.py` (`HunYuanDiT`, `HunYuanDiTBlock`, `FinalLayer`), `attn_layers.py`,
`poolers.py`, `posemb_layers.py`. The module names below are that code's, so the original
`pytorch_model_*.pt` files load strictly; `weights_loader/hunyuan.py` also maps diffusers'
`HunyuanDiT2DModel` folders.

What differs from DiT, PixArt and SD3, block by block:
  * the timestep enters as a SHIFT only (no scale, no gate): x + attn1(norm1(x) + shift(c)),
    "add" conditioning like SDXL's; the final layer alone has adaLN (shift, scale);
  * positions are not added to the tokens: 2-D RoPE rotates q and k of the self-attention, and q
    (not k: the text has no image position) of the cross-attention (`embed.get_2d_rope`);
  * cross-attention to 333 text tokens = BERT-CLIP's 77 (1024-d) ‖ `mlp_t5`(mT5-XL's 256 (2048-d)),
    with padded positions REPLACED by a learned `text_embedding_padding` — there is no mask;
  * QK LayerNorm (affine, per 88-d head) in both attentions, and FP32 LayerNorms everywhere;
  * U-ViT long skips: the outputs of layers 0..18 are pushed on a stack; layers 21..39 pop one
    (last in, first out), concatenate it to x and mix with `skip_linear(skip_norm([x, skip]))`;
  * the global vector c = t_embedder(t) + extra_embedder(pooler(mT5 tokens) [‖ size ‖ style]):
    an attention pool over mT5's tokens; v1.0/v1.1 also embed the image size and a style id.

    c       = t_embedder(t) + extra_embedder(extra_vec)                      (B, D)
    text    = where(mask, [BERT states ‖ mlp_t5(mT5 states)], text_embedding_padding)   (B, 333, 1024)
    x       = x_embedder(latents)                                            (B, T, D)
    per layer i: [x = skip_linear(skip_norm([x, skips.pop()]))   if i > depth/2]
                 x = x + attn1(norm1(x) + shift_i(c), rope)
                 x = x + attn2(norm3(x), text, rope on q)
                 x = x + mlp(norm2(x))
                 [skips.push(x)                                   if i < depth/2 - 1]
    out     = unpatchify(final_layer(x, c))                                  [v | learned sigma]

Beware the names: `norm2` is the norm BEFORE THE MLP and `norm3` the one before the
cross-attention (the official order); diffusers swaps the two names.

Glossary (paper | code | checkpoint key)
  DiT-g/2 (1.5 B)            | HunyuanConfig        | 40 blocks x 1408, 16 heads x 88
  shift-only modulation      | default_modulation   | blocks.i.default_modulation.1.*
  text padding embedding     | text_embedding_padding | text_embedding_padding (333, 1024)
  mT5 -> 1024 projection     | mlp_t5               | mlp_t5.0.*, mlp_t5.2.*
  long skip                  | skip_norm, skip_linear | blocks.{21..39}.skip_*
  size / style condition     | image_meta_size, style | extra_embedder.0.weight in-dim 3968 (v1.0/1.1) vs 1024

Shape legend: B batch, C latent channels (4), H W latent size, p patch (2), T = HW/p^2 image
tokens, L text tokens (77 + 256), D width (1408), nh heads (16), hd head dim (88).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .attention import Mlp, attention, merge_heads, per_token_chunks
from .embed import PatchEmbed, TimestepEmbedder, apply_rope, get_2d_rope, timestep_embedding, unpatchify

SIZE_DIMS = 6                     # image_meta_size: [src_h, src_w, target_W, target_H, crop_top, crop_left]
SIZE_FREQS = 256                  # each of the 6 numbers gets a 256-d sinusoid, like a timestep
MLP_CHUNK = 1024                  # tokens per MLP call (feed-forward chunking: same numbers, less peak memory)


@dataclass(frozen=True)
class HunyuanConfig:
    """The `HunYuanDiT` constructor arguments and the `args` fields it reads (`hydit/config.py`)."""
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 4.3637                 # int(1408 * 4.3637) = 6144
    learn_sigma: bool = True
    text_states_dim: int = 1024               # BERT-CLIP's width (and the cross-attention's key width)
    text_states_dim_t5: int = 2048            # mT5-XL's width
    text_len: int = 77
    text_len_t5: int = 256
    pooled_dim: int = 1024                    # the attention pool's output (fixed to 1024 in the code)
    pool_heads: int = 8
    size_cond: bool = False                   # v1.0/v1.1: image_meta_size and style join extra_vec
    num_styles: int = 1                       # style ids (`nn.Embedding(1, D)`: the releases use style 0)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def extra_in_dim(self) -> int:
        return self.pooled_dim + (SIZE_DIMS * SIZE_FREQS + self.hidden_size if self.size_cond else 0)


HUNYUAN_V12 = HunyuanConfig()
HUNYUAN_V11 = HunyuanConfig(size_cond=True)
# v1.2-Distilled is v1.2's network with fewer sampling steps; v1.0 has v1.1's layout.
PRESETS = {"hunyuan-dit-v1.2": HUNYUAN_V12, "hunyuan-dit-v1.2-distilled": HUNYUAN_V12,
           "hunyuan-dit-v1.1": HUNYUAN_V11, "hunyuan-dit-v1.0": HUNYUAN_V11}


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (`FP32_Layernorm`): the released
    weights run in fp16, where a 1408-wide mean of squares would lose precision."""

    def forward(self, x):
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class FP32SiLU(nn.Module):
    """SiLU in float32 (`FP32_SiLU`), cast back."""

    def forward(self, x):
        return F.silu(x.float()).to(x.dtype)


def head_norm(hd: int):
    """QK-norm: an affine LayerNorm over each 88-d head (a plain `nn.LayerNorm` in the official code)."""
    return nn.LayerNorm(hd, elementwise_affine=True, eps=1e-6)


class SelfAttention(nn.Module):
    """`attn1`: fused `Wqkv`, `q_norm`/`k_norm`, RoPE on q and k, `out_proj`."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.Wqkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = head_norm(dim // num_heads), head_norm(dim // num_heads)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, rope):
        """x (B, T, D), rope = (cos, sin) each (T, hd) -> (B, T, D)."""
        B, T, D = x.shape
        q, k, v = self.Wqkv(x).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)                                    # (B, nh, T, hd)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.out_proj(merge_heads(attention(q, k, v)))


class CrossAttention(nn.Module):
    """`attn2`: image queries (`q_proj`, RoPE), text keys and values (`kv_proj`), no mask."""

    def __init__(self, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(context_dim, 2 * dim)
        self.q_norm, self.k_norm = head_norm(dim // num_heads), head_norm(dim // num_heads)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x, text, rope):
        """x (B, T, D), text (B, L, context_dim) -> (B, T, D)."""
        B, T, D = x.shape
        nh, hd = self.num_heads, D // self.num_heads
        q = self.q_norm(self.q_proj(x).view(B, T, nh, hd).transpose(1, 2))     # (B, nh, T, hd)
        k, v = self.kv_proj(text).view(B, -1, 2, nh, hd).permute(2, 0, 3, 1, 4)  # (B, nh, L, hd) each
        q = apply_rope(q, *rope)                   # the text tokens have no image position: k is not rotated
        return self.out_proj(merge_heads(attention(q, self.k_norm(k), v)))


class HunyuanBlock(nn.Module):
    """One `HunYuanDiTBlock` (order and names as in the official code; see the module docstring)."""

    def __init__(self, config: HunyuanConfig, skip: bool):
        super().__init__()
        D = config.hidden_size
        self.norm1 = FP32LayerNorm(D, eps=1e-6)
        self.attn1 = SelfAttention(D, config.num_heads)
        self.norm2 = FP32LayerNorm(D, eps=1e-6)                       # before the MLP
        self.mlp = Mlp(D, int(D * config.mlp_ratio))
        self.default_modulation = nn.Sequential(FP32SiLU(), nn.Linear(D, D))
        self.attn2 = CrossAttention(D, config.text_states_dim, config.num_heads)
        self.norm3 = FP32LayerNorm(D, eps=1e-6)                       # before the cross-attention
        if skip:
            self.skip_norm = FP32LayerNorm(2 * D, eps=1e-6)
            self.skip_linear = nn.Linear(2 * D, D)
        else:
            self.skip_linear = None

    def forward(self, x, c, text, rope, skip=None):
        if self.skip_linear is not None:
            x = self.skip_linear(self.skip_norm(torch.cat([x, skip], dim=-1)))
        shift = self.default_modulation(c).unsqueeze(1)                          # (B, 1, D)
        x = x + self.attn1(self.norm1(x) + shift, rope)
        x = x + self.attn2(self.norm3(x), text, rope)
        return x + per_token_chunks(self.mlp, self.norm2(x), MLP_CHUNK)


class AttentionPool(nn.Module):
    """CLIP's attention pooling (`poolers.AttentionPool`): the mean token, with a learned position,
    attends over all tokens (8 heads); the result is projected to `output_dim`. (B, L, C) -> (B, out)."""

    def __init__(self, length: int, dim: int, num_heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(length + 1, dim) / dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x):
        B, L, C = x.shape
        if L + 1 != self.positional_embedding.shape[0]:
            raise ValueError(f"the attention pool was trained on {self.positional_embedding.shape[0] - 1} tokens, "
                             f"got {L}: pad or cut the mT5 states to that length")
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, L+1, C)
        nh = self.num_heads
        q = self.q_proj(x[:, :1]).view(B, 1, nh, C // nh).transpose(1, 2)           # (B, nh, 1, C/nh)
        k = self.k_proj(x).view(B, L + 1, nh, C // nh).transpose(1, 2)             # (B, nh, L+1, C/nh)
        v = self.v_proj(x).view(B, L + 1, nh, C // nh).transpose(1, 2)
        return self.c_proj(merge_heads(attention(q, k, v))[:, 0])                   # (B, out)


class FinalLayer(nn.Module):
    """LayerNorm (no affine), adaLN (shift, scale) from c, Linear to p*p*C_out per token."""

    def __init__(self, D: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(D, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(FP32SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(torch.addcmul(shift.unsqueeze(1), self.norm_final(x), 1 + scale.unsqueeze(1)))


class HunyuanDiT(nn.Module):
    """Hunyuan-DiT: forward(x, t, encoder_hidden_states, ...) -> (B, 2C, H, W) = [v | learned sigma]."""

    def __init__(self, config: HunyuanConfig = HunyuanConfig()):
        super().__init__()
        self.config = config
        D, cfg = config.hidden_size, config
        if D % cfg.num_heads or cfg.head_dim % 4:
            raise ValueError(f"width {D} with {cfg.num_heads} heads: the head width must be a whole multiple of 4 "
                             "(2-D RoPE rotates pairs on two axes)")
        if cfg.depth % 2 or cfg.depth < 4:
            raise ValueError(f"depth {cfg.depth}: the long skips pair layer i < depth/2 - 1 with layer depth - 1 - i, "
                             "which needs an even depth of at least 4 (the releases: 40)")
        self.mlp_t5 = nn.Sequential(nn.Linear(cfg.text_states_dim_t5, 4 * cfg.text_states_dim_t5), FP32SiLU(),
                                    nn.Linear(4 * cfg.text_states_dim_t5, cfg.text_states_dim))
        self.text_embedding_padding = nn.Parameter(torch.randn(cfg.text_len + cfg.text_len_t5, cfg.text_states_dim))
        self.pooler = AttentionPool(cfg.text_len_t5, cfg.text_states_dim_t5, cfg.pool_heads, cfg.pooled_dim)
        if cfg.size_cond:
            self.style_embedder = nn.Embedding(cfg.num_styles, D)
        self.x_embedder = PatchEmbed(cfg.patch_size, cfg.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        self.extra_embedder = nn.Sequential(nn.Linear(cfg.extra_in_dim, 4 * D), FP32SiLU(), nn.Linear(4 * D, D))
        self.blocks = nn.ModuleList([HunyuanBlock(cfg, skip=i > cfg.depth // 2) for i in range(cfg.depth)])
        self.final_layer = FinalLayer(D, cfg.patch_size, cfg.out_channels)

    def text_states(self, encoder_hidden_states, text_embedding_mask, encoder_hidden_states_t5, text_embedding_mask_t5):
        """The cross-attention's keys: [BERT ‖ mlp_t5(mT5)], padded positions replaced by the
        learned padding embedding -> (B, 77 + 256, 1024)."""
        cfg = self.config
        lengths = (encoder_hidden_states.shape[1], encoder_hidden_states_t5.shape[1])
        if lengths != (cfg.text_len, cfg.text_len_t5):
            raise ValueError(f"text states of {lengths[0]} (CLIP) and {lengths[1]} (mT5) tokens; this model "
                             f"takes exactly {cfg.text_len} and {cfg.text_len_t5} (pad to max_length)")
        text = torch.cat([encoder_hidden_states, self.mlp_t5(encoder_hidden_states_t5)], dim=1)
        mask = torch.cat([text_embedding_mask, text_embedding_mask_t5], dim=-1).bool().unsqueeze(2)
        return torch.where(mask, text, self.text_embedding_padding.to(text))

    def condition(self, t, encoder_hidden_states_t5, image_meta_size=None, style=None):
        """c = t_embedder(t) + extra_embedder([pooler(mT5) ‖ size(6 x 256) ‖ style]) -> (B, D)."""
        extra = [self.pooler(encoder_hidden_states_t5)]
        if self.config.size_cond:
            if image_meta_size is None or style is None:
                raise ValueError("this Hunyuan-DiT (v1.0/v1.1) is conditioned on image_meta_size (B, 6) "
                                 "[src_h, src_w, target_W, target_H, 0, 0] and style (B,) (0)")
            size = timestep_embedding(image_meta_size.reshape(-1), SIZE_FREQS).view(-1, SIZE_DIMS * SIZE_FREQS)
            extra += [size.to(extra[0].dtype), self.style_embedder(style)]
        return self.t_embedder(t) + self.extra_embedder(torch.cat(extra, dim=1))

    def forward(self, x, t, encoder_hidden_states, text_embedding_mask, encoder_hidden_states_t5,
                text_embedding_mask_t5, image_meta_size=None, style=None, cos_cis_img=None, sin_cis_img=None):
        """x (B, C, H, W) latents; t (B,) timesteps 0..999; encoder_hidden_states (B, 77, 1024) BERT-CLIP
        states with text_embedding_mask (B, 77); encoder_hidden_states_t5 (B, 256, 2048) mT5 states
        with text_embedding_mask_t5 (B, 256); image_meta_size (B, 6) and style (B,) for v1.0/v1.1;
        cos_cis_img, sin_cis_img (T, hd) RoPE tables (default: `embed.get_2d_rope` on the base-512 grid).
        Returns (B, out_channels, H, W): the v-prediction, then the learned-sigma channels."""
        p = self.config.patch_size
        H, W = x.shape[-2:]
        if H % p or W % p:
            raise ValueError(f"latent {H}x{W} is not divisible by the patch size {p}")
        if cos_cis_img is None or sin_cis_img is None:
            cos_cis_img, sin_cis_img = get_2d_rope(self.config.head_dim, H // p, W // p)
        rope = (cos_cis_img.to(x.device, torch.float32), sin_cis_img.to(x.device, torch.float32))
        text = self.text_states(encoder_hidden_states, text_embedding_mask, encoder_hidden_states_t5,
                                text_embedding_mask_t5)
        c = self.condition(t, encoder_hidden_states_t5, image_meta_size, style)
        x = self.x_embedder(x)
        skips, half = [], self.config.depth // 2
        for i, block in enumerate(self.blocks):
            x = block(x, c, text, rope, skips.pop() if i > half else None)
            if i < half - 1:
                skips.append(x)
        return unpatchify(self.final_layer(x, c), p, H // p, W // p)
