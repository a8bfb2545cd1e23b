"""PixArt-α and PixArt-Σ: text-to-image DiTs with adaLN-single and cross-attention to T5.

Papers: PixArt-α (Chen et al., arXiv:2310.00426) §2.3; PixArt-Σ (Chen et al., arXiv:2403.04692) §3
(KV token compression). Official code: PixArt-alpha/PixArt-sigma `diffusion/model/nets/PixArt.py`,
`PixArtMS.py`, `PixArt_blocks.py`. Attribute names are the keys of the released `.pth` files
(`PixArt-XL-2-512x512.pth` ... `PixArt-Sigma-XL-2-2K-MS.pth`, inside their `{"state_dict": ...}`),
so those load strictly (`weights_loader.load_pixart`; the stored `pos_embed` is recomputed).

    x_t (B, C, H, W) --patchify+embed--> (B, T, D) + pos(base_size, pe_interpolation)
    t = t_embedder(timestep) [+ csize_embedder(img_hw) | ar_embedder(h/w)]   (B, D)  micro-cond: α-1024
    t0 = t_block(t)                          adaLN-single: ONE (B, 6D) modulation for all blocks
    y = y_embedder(T5 states)                (B, L, D)
    N x PixArtBlock(x, y, t0)                shift/scale/gate = blocks.i.scale_shift_table + t0
                                             self-attn -> cross-attn to y (mask; no norm, no gate) -> MLP
    T2IFinalLayer(x, t)                      shift/scale = scale_shift_table + t (the raw t, not t0)
    unpatchify --> (B, C_out, H, W)          C_out = 2C with pred_sigma: [eps | v] (IDDPM learned range)

adaLN-single vs DiT's adaLN-Zero: DiT's every block owns a Linear(D, 6D) (28 x 8.0M = 223M
parameters at XL size); PixArt shares one `t_block` and gives each block a learned (6, D) table.

Glossary (paper symbol | code name | checkpoint key)
  N blocks            | depth               | blocks.{0..N-1}
  d                   | hidden_size         | x_embedder.proj.weight.shape[0]
  E^(i) (per block)   | scale_shift_table   | blocks.i.scale_shift_table (6, D);  S^(i) = S̄ + E^(i)
  S̄ = MLP(t) (shared) | t0                  | t_block.1 (6D rows)
  β, γ, α             | shift_*, scale_*, gate_* | rows 0-5: shift/scale/gate_msa, shift/scale/gate_mlp
  c_size, AR          | img_hw, aspect_ratio | csize_embedder.mlp.*, ar_embedder.mlp.* (α-1024-MS only)
  ∅ caption           | null_caption()      | y_embedder.y_embedding (L, 4096)
  Σ (learned)         | pred_sigma          | final_layer.linear.weight.shape[0] = p*p*2C
  s (KV compression)  | sr_ratio            | blocks.i.attn.sr (depthwise s x s conv), blocks.i.attn.norm

Shape legend: B batch, C channels, H W latent size, p patch, h w = H/p W/p, T = h*w image tokens,
L caption tokens, D width, C_cap caption channels (4096 for T5-XXL). The official code writes N for B.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, MultiHeadCrossAttention, Mlp, attention, merge_heads
from .embed import PatchEmbed, TimestepEmbedder, cached_2d_sincos_pos_embed, unpatchify

KV_SAMPLINGS = ("conv", "ave", "uniform")
# Caption length in T5 tokens, per model family: the null caption's rows and the pipelines' default
# prompt length (diffusers' `max_sequence_length`). The one table; everything else derives from it.
CAPTION_TOKENS = {"alpha": 120, "sigma": 300}


@dataclass(frozen=True)
class KVCompressConfig:
    """The official `kv_compress_config` dict, as a dataclass (same key names). No released checkpoint uses it."""
    sampling: str = "conv"                    # conv: learned depthwise conv + LayerNorm; ave / uniform: subsample
    scale_factor: int = 2                     # s: keys/values are downsampled s x s (s^2 fewer tokens)
    kv_compress_layer: tuple[int, ...] = ()   # which blocks compress

    def __post_init__(self):
        if self.sampling not in KV_SAMPLINGS:
            raise ValueError(f"kv_compress sampling {self.sampling!r} is not one of {KV_SAMPLINGS}")
        if int(self.scale_factor) < 1:
            raise ValueError(f"kv_compress scale_factor must be >= 1, got {self.scale_factor}")
        object.__setattr__(self, "kv_compress_layer", tuple(int(i) for i in self.kv_compress_layer))


@dataclass(frozen=True)
class PixArtConfig:
    input_size: int = 32              # latent side at the training resolution (image side / 8)
    patch_size: int = 2               # p
    in_channels: int = 4              # C
    hidden_size: int = 1152           # d
    depth: int = 28                   # N
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1   # caption dropout (-> y_embedding) during training
    pred_sigma: bool = True           # output [eps | v] (2C channels)
    caption_channels: int = 4096      # T5-XXL width
    pe_interpolation: float = 1.0     # α calls it lewei_scale; = training resolution / 512
    model_max_length: int = CAPTION_TOKENS["alpha"]   # caption tokens of the null caption (CAPTION_TOKENS)
    micro_condition: bool = False     # size + aspect-ratio embedders (α-1024-MS only)
    qk_norm: bool = False             # LayerNorm on q and k (over all D)
    kv_compress_config: KVCompressConfig | None = None

    def __post_init__(self):
        if isinstance(self.kv_compress_config, dict):  # accept the official dict as well
            object.__setattr__(self, "kv_compress_config", KVCompressConfig(**self.kv_compress_config))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.micro_condition and self.hidden_size % 3:
            raise ValueError(f"micro_condition needs hidden_size divisible by 3 (3 size embedders of D/3), "
                             f"got {self.hidden_size}")
        kv = self.kv_compress_config
        if kv is not None and any(not 0 <= i < self.depth for i in kv.kv_compress_layer):
            raise ValueError(f"kv_compress_layer {kv.kv_compress_layer} must lie in [0, depth={self.depth})")

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def base_size(self) -> int:
        """Tokens per side at the training resolution; positions are stretched to it (see `pos_embed`)."""
        return self.input_size // self.patch_size

    def sr_ratio(self, layer: int) -> int:
        kv = self.kv_compress_config
        return int(kv.scale_factor) if kv is not None and layer in kv.kv_compress_layer else 1


def t2i_modulate(x, shift, scale):
    """x * (1 + scale) + shift, with (B, 1, D) shift/scale (PixArt keeps the token axis; DiT's
    `modulate` takes (B, D) and unsqueezes). One fused addcmul: no (B, T, D) temporary."""
    return torch.addcmul(shift, x, 1 + scale)


# --------------------------------------------------------------------------------------------
# Embedders: image size / aspect ratio, caption
# --------------------------------------------------------------------------------------------


class SizeEmbedder(TimestepEmbedder):
    """Each scalar of (B, n) -> 256-d sinusoid (cos first) -> MLP -> D'; concatenated to (B, n*D')."""

    def forward(self, s, batch_size: int):
        s = s.reshape(s.shape[0], -1)                                          # (b, n)
        if s.shape[0] != batch_size:   # one size for a CFG-doubled batch: repeat, as the official code
            if batch_size % s.shape[0]:
                raise ValueError(f"size condition has {s.shape[0]} rows for a batch of {batch_size}")
            s = s.repeat(batch_size // s.shape[0], 1)
        emb = super().forward(s.reshape(-1))                                   # (B*n, D')
        return emb.reshape(batch_size, -1)                                     # (B, n*D')


class CaptionEmbedder(nn.Module):
    """T5 states -> D with `y_proj` (Mlp, GELU-tanh); stores the null caption `y_embedding`.

    `y_embedding` replaces a caption when it is dropped (training, `class_dropout_prob`) and is α's
    unconditional input at sampling time. Σ's file holds T5("") there. diffusers folders do not
    store it at all: then the loader sets `has_null_caption = False` and `null_caption()` raises
    (to train such a model, copy T5("") into `y_embedding` and set the flag).
    """

    def __init__(self, in_channels: int, hidden_size: int, uncond_prob: float, token_num: int):
        super().__init__()
        self.y_proj = Mlp(in_channels, hidden_size, hidden_size, approximate="tanh")
        self.register_buffer("y_embedding", torch.randn(token_num, in_channels) / in_channels**0.5)
        self.uncond_prob = uncond_prob
        self.has_null_caption = True

    def null_caption(self):
        """The stored unconditional caption (L, C_cap)."""
        if not self.has_null_caption:
            raise RuntimeError("this model has no stored null caption y_embedding (diffusers folders do not "
                               "store it): encode the empty prompt with T5 instead, as diffusers does, or load "
                               "the original .pth")
        return self.y_embedding

    def token_drop(self, caption, force_drop_ids=None, generator=None):
        """Replace whole captions by the null caption: randomly (training) or where force_drop_ids == 1."""
        if force_drop_ids is None:
            drop = torch.rand(caption.shape[0], device=caption.device, generator=generator) < self.uncond_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop[:, None, None], self.null_caption().to(caption.dtype), caption)

    def forward(self, caption, train: bool = False, force_drop_ids=None):
        if (train and self.uncond_prob > 0) or force_drop_ids is not None:
            caption = self.token_drop(caption, force_drop_ids)
        return self.y_proj(caption)                                            # (B, L, D)


# --------------------------------------------------------------------------------------------
# Self-attention with the Σ options: QK-norm and KV token compression
# --------------------------------------------------------------------------------------------


class AttentionKVCompress(Attention):
    """Self-attention (fused qkv) + optional LayerNorm on q, k and optional K/V downsampling.

    With `sr_ratio = s > 1` the keys and values (not the queries) are reduced to an (h/s) x (w/s)
    grid, so the score matrix is T x T/s^2. `conv` learns a depthwise s x s conv (`sr`, initialised
    to an average) + LayerNorm (`norm`); `ave` is, in the official code, `F.interpolate(mode="nearest")`
    — a subsample, the same tokens as `uniform`, despite its name.
    """

    def __init__(self, dim: int, num_heads: int, sampling: str | None = None, sr_ratio: int = 1,
                 qk_norm: bool = False):
        super().__init__(dim, num_heads, qkv_bias=True)
        self.sampling, self.sr_ratio = sampling, sr_ratio
        if sr_ratio > 1 and sampling == "conv":
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio, groups=dim)
            nn.init.constant_(self.sr.weight, 1.0 / sr_ratio**2)
            nn.init.zeros_(self.sr.bias)
            self.norm = nn.LayerNorm(dim)
        self.q_norm = nn.LayerNorm(dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(dim) if qk_norm else nn.Identity()

    def downsample_2d(self, x, hw):
        """(B, h*w, D) -> (B, h/s * w/s, D)"""
        (h, w), s = hw, self.sr_ratio
        if h % s or w % s:
            raise ValueError(f"KV compression x{s} needs a token grid divisible by {s}, got {h}x{w}")
        B, T, D = x.shape
        x = x.transpose(1, 2).reshape(B, D, h, w)                              # (B, D, h, w)
        if self.sampling == "conv":
            return self.norm(self.sr(x).flatten(2).transpose(1, 2))            # (B, T/s^2, D)
        if self.sampling == "ave":
            x = F.interpolate(x, scale_factor=1 / s, mode="nearest")           # (B, D, h/s, w/s)
        elif self.sampling == "uniform":
            x = x[:, :, ::s, ::s]                                              # (B, D, h/s, w/s)
        else:
            raise ValueError(f"unknown KV sampling {self.sampling!r}; use one of {KV_SAMPLINGS}")
        return x.flatten(2).transpose(1, 2)                                    # (B, T/s^2, D)

    def forward(self, x, hw=None):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, D).unbind(2)                       # 3 x (B, T, D)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.sr_ratio > 1:
            if hw is None:
                raise ValueError("KV compression needs the token grid size hw=(h, w)")
            k, v = self.downsample_2d(k, hw), self.downsample_2d(v, hw)        # (B, T', D)
        nh = self.num_heads
        q, k, v = (t.reshape(B, t.shape[1], nh, D // nh).transpose(1, 2) for t in (q, k, v))
        return self.proj(merge_heads(attention(q, k, v)))                      # (B, T, D)


# --------------------------------------------------------------------------------------------
# Block, final layer, model
# --------------------------------------------------------------------------------------------


class PixArtBlock(nn.Module):
    """A PixArt block: adaLN-single-modulated self-attention and MLP, unmodulated cross-attention.
    `cross_attention=False` leaves the cross-attention out (Latte's temporal blocks, `minidit/latte.py`)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, sampling: str | None = None,
                 sr_ratio: int = 1, qk_norm: bool = False, cross_attention: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = AttentionKVCompress(hidden_size, num_heads, sampling, sr_ratio, qk_norm)
        self.cross_attn = MultiHeadCrossAttention(hidden_size, num_heads) if cross_attention else None
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def modulation(self, t0):
        """adaLN-single: this block's table + the shared t0 (B, 6D) -> shift_msa, scale_msa, gate_msa,
        shift_mlp, scale_mlp, gate_mlp, each (B, 1, D)."""
        table = self.scale_shift_table[None] + t0.reshape(t0.shape[0], 6, -1)  # (B, 6, D)
        return table.chunk(6, dim=1)

    def cross_attn_residual(self, x, y, mask):
        """x + cross_attn(x, y): unmodulated and ungated (x unchanged if the block has no cross-attention)."""
        return x if self.cross_attn is None else x + self.cross_attn(x, y, mask)

    def mlp_residual(self, x, shift_mlp, scale_mlp, gate_mlp):
        """x + gate_mlp * mlp(modulate(norm2(x))), as one addcmul."""
        return torch.addcmul(x, gate_mlp, self.mlp(t2i_modulate(self.norm2(x), shift_mlp, scale_mlp)))

    def forward(self, x, y, t0, mask=None, hw=None):
        """x (B, T, D) image tokens, y (B, L, D) caption tokens, t0 (B, 6D), mask (B, L) True = real token."""
        shift_msa, scale_msa, gate_msa, *mlp = self.modulation(t0)              # (B, 1, D) each
        # x + gate * branch, fused into one addcmul (no (B, T, D) temporary for gate * branch)
        x = torch.addcmul(x, gate_msa, self.attn(t2i_modulate(self.norm1(x), shift_msa, scale_msa), hw))
        # one residual step per line, x rebound each time: a tensor passed into a call stays referenced by
        # the caller until the call returns, so chaining the steps in one call would keep one more B*T*D
        x = self.cross_attn_residual(x, y, mask)
        return self.mlp_residual(x, *mlp)                                      # (B, T, D)


class T2IFinalLayer(nn.Module):
    """shift, scale = scale_shift_table (2, D) + t; LayerNorm, modulate, Linear(D, p*p*C_out)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x, t):
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)  # (B, 1, D) each
        return self.linear(t2i_modulate(self.norm_final(x), shift, scale))     # (B, T, p*p*C_out)


class PixArt(nn.Module):
    """PixArt-α/Σ transformer: forward(x_t, timestep, y, mask) -> [eps | v]."""

    def __init__(self, config: PixArtConfig = PixArtConfig()):
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed(c.patch_size, c.in_channels, D)
        self.t_embedder, self.t_block, self.y_embedder = conditioning_embedders(c)
        if c.micro_condition:
            self.csize_embedder = SizeEmbedder(D // 3)    # (h, w) -> 2 x D/3
            self.ar_embedder = SizeEmbedder(D // 3)       # h / w  -> D/3
        sampling = c.kv_compress_config.sampling if c.kv_compress_config else None
        self.blocks = nn.ModuleList([PixArtBlock(D, c.num_heads, c.mlp_ratio, sampling, c.sr_ratio(i), c.qk_norm)
                                     for i in range(c.depth)])
        self.final_layer = T2IFinalLayer(D, c.patch_size, c.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """The official initialisation (PixArtMS.initialize): see `initialize_pixart_weights`."""
        embedders = [self.csize_embedder, self.ar_embedder] if self.config.micro_condition else []
        initialize_pixart_weights(self, embedders)

    def pos_embed(self, h: int, w: int, device=None, dtype=None):
        """The sin-cos table for an h x w token grid, each axis stretched to span
        [0, base_size / pe_interpolation) (PixArtMS recomputes it every forward): (1, T, D)."""
        c = self.config
        return cached_2d_sincos_pos_embed(c.hidden_size, h, w, c.base_size, float(c.pe_interpolation),
                                          device, dtype)[None]

    def forward(self, x, timestep, y, mask=None, *, img_hw=None, aspect_ratio=None):
        """x (B, C, H, W) noisy latents; timestep (B,) 0..999 (may be fractional); y (B, L, C_cap) T5
        states (the official (B, 1, L, C_cap) works too); mask (B, L), 1 = real token, 0 = padding.
        Micro-conditions (α-1024-MS): img_hw (B, 2) the image's (height, width) in pixels,
        aspect_ratio (B,) or (B, 1) = height / width — official `data_info`, diffusers
        `added_cond_kwargs={"resolution", "aspect_ratio"}`. Returns (B, C_out, H, W)."""
        c, B = self.config, x.shape[0]
        h, w = x.shape[-2] // c.patch_size, x.shape[-1] // c.patch_size
        x = self.x_embedder(x) + self.pos_embed(h, w, x.device, x.dtype)      # (B, T, D)
        t = self.t_embedder(timestep)                                          # (B, D)
        if c.micro_condition:
            if img_hw is None or aspect_ratio is None:
                raise ValueError("this model (micro_condition=True, PixArt-α 1024-MS) needs img_hw=(B, 2) pixel "
                                 "(height, width) and aspect_ratio=(B,) height/width")
            t = t + torch.cat([self.csize_embedder(img_hw, B), self.ar_embedder(aspect_ratio, B)], dim=1)
        t0 = self.t_block(t)                                                   # (B, 6D)
        y, mask = embed_caption(self.y_embedder, y, mask, B, self.training)   # (B, L, D), (B, L) bool
        for block in self.blocks:
            x = block(x, y, t0, mask, (h, w))                                  # (B, T, D)
        x = self.final_layer(x, t)                                             # (B, T, p*p*C_out)
        return unpatchify(x, c.patch_size, h, w)                               # (B, C_out, H, W)

    @staticmethod
    def _key_padding_mask(mask, B: int, L: int):
        """The official code drops padded caption tokens (xformers BlockDiagonalMask of the real lengths);
        a boolean key mask gives the same attention. A mask of fewer rows is repeated, as the official
        forward does for CFG (the conditional mask is then reused for the unconditional half)."""
        if mask is None:
            return None
        mask = mask.reshape(mask.shape[0], -1).bool()
        if mask.shape[1] != L or B % mask.shape[0]:
            raise ValueError(f"caption mask {tuple(mask.shape)} does not fit a batch of {B} captions of {L} tokens")
        mask = mask.repeat(B // mask.shape[0], 1)
        if not mask.is_meta and not mask.any(dim=1).all():                     # (no values on meta: shape runs)
            raise ValueError("a caption mask row is all zeros: every caption needs at least one real token "
                             "(T5 always emits </s>)")
        return mask


def conditioning_embedders(c):
    """PixArt's timestep embedder, adaLN-single `t_block` (SiLU, Linear(D, 6D)) and caption embedder, for
    a config with hidden_size, caption_channels, class_dropout_prob and model_max_length (PixArt, STDiT)."""
    D = c.hidden_size
    return (TimestepEmbedder(D), nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D)),
            CaptionEmbedder(c.caption_channels, D, c.class_dropout_prob, c.model_max_length))


def initialize_pixart_weights(model: nn.Module, extra_embedders=()):
    """The official initialisation of a PixArt-style model (also Open-Sora's STDiT): xavier-uniform
    Linears (and the patch embedding, as a Linear), N(0, 0.02) timestep / t_block / caption MLPs,
    and zeros for every block's cross-attn output and the final Linear; the scale_shift_tables keep
    their randn / sqrt(D) init."""
    def _basic_init(module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    model.apply(_basic_init)
    w = model.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    linears = [e.mlp[i] for e in [model.t_embedder, *extra_embedders] for i in (0, 2)]
    for linear in linears + [model.t_block[1], model.y_embedder.y_proj.fc1, model.y_embedder.y_proj.fc2]:
        nn.init.normal_(linear.weight, std=0.02)
    for block in model.blocks:
        nn.init.zeros_(block.cross_attn.proj.weight)
        nn.init.zeros_(block.cross_attn.proj.bias)
    nn.init.zeros_(model.final_layer.linear.weight)
    nn.init.zeros_(model.final_layer.linear.bias)


def embed_caption(y_embedder: CaptionEmbedder, y, mask, B: int, training: bool = False):
    """T5 states (B, L, C_cap) (or the official (B, 1, L, C_cap)) and their mask -> the projected
    caption (B, L, D) and a boolean key-padding mask (B, L) or None (checks in PixArt._key_padding_mask)."""
    if y.ndim == 4 and y.shape[1] == 1:                                        # the official (B, 1, L, C_cap)
        y = y[:, 0]
    if y.ndim != 3 or y.shape[0] != B:
        raise ValueError(f"caption states y must be (B, L, C_cap) with B = {B} (the latents' batch), "
                         f"got {tuple(y.shape)}")
    y = y_embedder(y, training)                                                # (B, L, D)
    return y, PixArt._key_padding_mask(mask, B, y.shape[1])


# --------------------------------------------------------------------------------------------
# Presets: the six released checkpoints (all PixArt-XL/2: 28 x 1152, 16 heads, patch 2, T5-XXL)
# --------------------------------------------------------------------------------------------
PIXART_XL_2 = PixArtConfig(depth=28, hidden_size=1152, patch_size=2, num_heads=16)
_ALPHA_XL_2 = replace(PIXART_XL_2, model_max_length=CAPTION_TOKENS["alpha"])    # α: 120-token captions
_SIGMA_XL_2 = replace(PIXART_XL_2, model_max_length=CAPTION_TOKENS["sigma"])    # Σ: 300-token captions
PIXART_ALPHA_512 = replace(_ALPHA_XL_2, input_size=64, pe_interpolation=1.0)
PIXART_ALPHA_1024_MS = replace(_ALPHA_XL_2, input_size=128, pe_interpolation=2.0, micro_condition=True)
PIXART_SIGMA_256 = replace(_SIGMA_XL_2, input_size=32, pe_interpolation=0.5)
PIXART_SIGMA_512_MS = replace(_SIGMA_XL_2, input_size=64, pe_interpolation=1.0)
PIXART_SIGMA_1024_MS = replace(_SIGMA_XL_2, input_size=128, pe_interpolation=2.0)
PIXART_SIGMA_2K_MS = replace(_SIGMA_XL_2, input_size=256, pe_interpolation=4.0)

PRESETS = {
    "PixArt-XL-2-512x512": PIXART_ALPHA_512,
    "PixArt-XL-2-1024-MS": PIXART_ALPHA_1024_MS,
    "PixArt-Sigma-XL-2-256x256": PIXART_SIGMA_256,
    "PixArt-Sigma-XL-2-512-MS": PIXART_SIGMA_512_MS,
    "PixArt-Sigma-XL-2-1024-MS": PIXART_SIGMA_1024_MS,
    "PixArt-Sigma-XL-2-2K-MS": PIXART_SIGMA_2K_MS,
}
# Not released: the Σ paper's KV-compressed 1024 model
# (PixArt-sigma configs/pixart_sigma_config/PixArt_sigma_xl2_img1024_internalms_kvcompress.py).
PIXART_SIGMA_1024_KV_COMPRESS = replace(
    PIXART_SIGMA_1024_MS, kv_compress_config=KVCompressConfig("conv", 2, tuple(range(14, 28))))
