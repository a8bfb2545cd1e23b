"""MM-DiT: Stable Diffusion 3 / 3.5's transformer — text and image tokens in ONE attention.

Paper: Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis"
(arXiv:2403.03206, §4: the MM-DiT block); SD3.5 adds QK RMSNorm and, in 3.5-medium, MMDiT-X's
second, image-only self-attention. Official code: Stability-AI/sd3.5 `mmditx.py` (`MMDiTX`,
`JointBlock`, `DismantledBlock`, `block_mixing`). The module names below are that file's, so the
official single files (`sd3_medium.safetensors`, `sd3.5_large.safetensors`, `sd3.5_medium.safetensors`,
under `model.diffusion_model.`) load strictly; `weights_loader/mmdit.py` also maps diffusers'
`SD3Transformer2DModel` folders.

What is new compared with DiT and PixArt: there is no cross-attention. Each layer has two
`DismantledBlock`s, one per stream (context = text tokens, x = image tokens), each with its own
adaLN, q/k/v, output projection and MLP. Their q, k, v are concatenated along the sequence,
[context, x], and one softmax runs over all of it: text attends to image and image to text.

    c       = t_embedder(t) + y_embedder(pooled text)                 the adaLN conditioning (B, D)
    context = context_embedder(text states)                           (B, L, 4096) -> (B, L, D)
    x       = x_embedder(latents) + pos_embed (centre-cropped)         (B, T, D)
    per layer: (context, x) = block_mixing(context, x, c)
    out     = unpatchify(final_layer(x, c))                           the velocity v (B, 16, H, W)

In the released models the sizes follow from the depth alone (the official `BaseModel` reads
them off the checkpoint): hidden = 64 * depth, heads = depth, head_dim = 64. The last layer's context block is `pre_only`
(q/k/v only: the text stream's output is never used again).

Glossary (paper | code | checkpoint key)
  c (conditioning)           | c                 | t_embedder.mlp.*, y_embedder.mlp.*
  text / image stream         | context / x       | joint_blocks.i.context_block.* / .x_block.*
  QK-norm                     | ln_q, ln_k        | ...attn.ln_q.weight (RMSNorm over the 64-d head)
  MMDiT-X self-attention      | attn2             | joint_blocks.i.x_block.attn2.*
  fixed positions             | pos_embed         | pos_embed (1, M*M, D), stored in the file

Shape legend: B batch, C latent channels (16), H W latent size, p patch (2), T = HW/p^2 image
tokens, L text tokens, D width, nh heads, hd head dim (64), M pos_embed_max_size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import Mlp, attention, merge_heads, per_token_chunks
from .dit import FinalLayer, modulate
from .embed import PatchEmbed, TimestepEmbedder, get_2d_sincos_pos_embed, unpatchify

HEAD_DIM = 64          # "apply magic --> this defines a head_size of 64" (mmditx.py)
MLP_CHUNK = 1024       # tokens per MLP call (feed-forward chunking, `DismantledBlock.mlp_residual`)


@dataclass(frozen=True)
class MMDiTConfig:
    """The `MMDiTX` constructor arguments the released checkpoints set (`sd3_impls.BaseModel`), with
    two differences: `context_embedder_config={"params": {"in_features": 4096, ...}}` is `context_dim`,
    and the width and head count are fields. The official code fixes them from the depth
    (hidden = 64 * depth, heads = depth: 64-d heads), which every release follows and the loader
    checks; as fields they also describe the tiny test models."""
    patch_size: int = 2
    in_channels: int = 16
    depth: int = 24
    hidden_size: int = 1536
    num_heads: int = 24
    mlp_ratio: float = 4.0
    adm_in_channels: int = 2048                    # pooled text: CLIP-L 768 + bigG 1280
    context_dim: int = 4096                        # the text states' width (T5-XXL; CLIPs zero-padded)
    out_channels: int = 16
    pos_embed_max_size: int = 192                  # M: the stored table covers M x M patches
    qk_norm: str | None = None                     # None (SD3) | "rms" (SD3.5)
    x_block_self_attn_layers: tuple[int, ...] = ()  # MMDiT-X: layers whose image stream has `attn2`


def official_size(depth: int, **kw) -> MMDiTConfig:
    """A config of the official design: hidden = 64 * depth, heads = depth."""
    return MMDiTConfig(depth=depth, hidden_size=HEAD_DIM * depth, num_heads=depth, **kw)


SD3_MEDIUM = official_size(24, pos_embed_max_size=192)
SD35_LARGE = official_size(38, pos_embed_max_size=192, qk_norm="rms")
SD35_MEDIUM = official_size(24, pos_embed_max_size=384, qk_norm="rms", x_block_self_attn_layers=tuple(range(13)))
# SD3.5-Large-Turbo is SD3.5-large's network, distilled: the same config, its own sampling defaults.
PRESETS = {"sd3-medium": SD3_MEDIUM, "sd3.5-large": SD35_LARGE, "sd3.5-large-turbo": SD35_LARGE,
           "sd3.5-medium": SD35_MEDIUM}


class SelfAttention(nn.Module):
    """One stream's attention weights: fused `qkv`, optional per-head QK RMSNorm, `proj` (not when pre_only)."""

    def __init__(self, dim: int, num_heads: int, pre_only: bool = False, qk_norm: str | None = None):
        super().__init__()
        if qk_norm not in (None, "rms"):
            raise ValueError(f"qk_norm must be None or 'rms' (the released checkpoints), not {qk_norm!r}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
        hd = dim // num_heads
        self.ln_q = nn.RMSNorm(hd, eps=1e-6) if qk_norm == "rms" else nn.Identity()
        self.ln_k = nn.RMSNorm(hd, eps=1e-6) if qk_norm == "rms" else nn.Identity()

    def qkv_heads(self, x):
        """(B, T, D) -> q, k, v, each (B, nh, T, hd); q and k normalised per head."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads).unbind(2)   # (B, T, nh, hd)
        return self.ln_q(q).transpose(1, 2), self.ln_k(k).transpose(1, 2), v.transpose(1, 2)


class DismantledBlock(nn.Module):
    """A DiT block split at the attention: `pre_attention` (adaLN -> q, k, v) and `post_attention`
    (projection, gated residual, MLP), so two streams can share one softmax in between.

    adaLN outputs 6 (shift, scale, gate for attention and MLP), 2 (pre_only: shift, scale) or 9
    (MMDiT-X: also shift, scale, gate of the image-only `attn2`) vectors of width D."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, pre_only: bool = False,
                 qk_norm: str | None = None, x_block_self_attn: bool = False):
        super().__init__()
        if pre_only and x_block_self_attn:
            raise ValueError("a pre_only block has no image-only attention")
        self.pre_only, self.x_block_self_attn = pre_only, x_block_self_attn
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, pre_only, qk_norm)
        if x_block_self_attn:
            self.attn2 = SelfAttention(dim, num_heads, False, qk_norm)
        if not pre_only:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.n_mods = 9 if x_block_self_attn else 2 if pre_only else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, self.n_mods * dim))

    def pre_attention(self, x, c):
        """-> (q, k, v), (q2, k2, v2) of attn2 or None, the adaLN vectors (each (B, D))."""
        mods = self.adaLN_modulation(c).chunk(self.n_mods, dim=1)
        if not self.x_block_self_attn:      # norm1(x) is a temporary, freed before the qkv projection runs
            return self.attn.qkv_heads(modulate(self.norm1(x), mods[0], mods[1])), None, mods
        h = self.norm1(x)                   # MMDiT-X: both attentions read the same normalised x
        return (self.attn.qkv_heads(modulate(h, mods[0], mods[1])),
                self.attn2.qkv_heads(modulate(h, mods[6], mods[7])), mods)

    def post_attention(self, x, attn, attn2, mods):
        """attn, attn2: (B, T, D) attention outputs (heads merged) -> the block's new x."""
        return self.mlp_residual(self.attn_residual(x, attn, attn2, mods), mods)

    def attn_residual(self, x, attn, attn2, mods):
        """x + gate_msa * proj(attn) (+ gate_msa2 * proj2(attn2)), each as one addcmul (no temporary)."""
        x = torch.addcmul(x, mods[2].unsqueeze(1), self.attn.proj(attn))
        if attn2 is not None:
            x = torch.addcmul(x, mods[8].unsqueeze(1), self.attn2.proj(attn2))
        return x

    def mlp_residual(self, x, mods):
        """x + gate_mlp * mlp(modulate(norm2(x), shift_mlp, scale_mlp)). The MLP acts on each token
        alone, so it runs on MLP_CHUNK tokens at a time (feed-forward chunking): the same numbers,
        but its 4D-wide hidden state exists for one chunk only (at 1024^2, 2 x 4096 image tokens, that
        is 400 MB of float32 less at the peak)."""
        h = modulate(self.norm2(x), mods[3], mods[4])                              # (B, T, D)
        out = per_token_chunks(self.mlp, h, MLP_CHUNK)
        del h
        return torch.addcmul(x, mods[5].unsqueeze(1), out)


class JointBlock(nn.Module):
    """One MM-DiT layer: the text and the image stream attend jointly (`block_mixing`)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, pre_only: bool = False,
                 qk_norm: str | None = None, x_block_self_attn: bool = False):
        super().__init__()
        self.context_block = DismantledBlock(dim, num_heads, mlp_ratio, pre_only, qk_norm)
        self.x_block = DismantledBlock(dim, num_heads, mlp_ratio, False, qk_norm, x_block_self_attn)

    def forward(self, context, x, c):
        """context (B, L, D), x (B, T, D), c (B, D) -> (context or None after the last layer, x)."""
        ctx_qkv, _, ctx_mods = self.context_block.pre_attention(context, c)
        x_qkv, x_qkv2, x_mods = self.x_block.pre_attention(x, c)
        q, k, v = (torch.cat([a, b], dim=2) for a, b in zip(ctx_qkv, x_qkv))      # (B, nh, L+T, hd)
        del ctx_qkv, x_qkv                     # free the per-stream projections before the attention runs
        joint = merge_heads(attention(q, k, v))                                  # (B, L+T, D)
        del q, k, v
        L = context.shape[1]
        x_attn2 = merge_heads(attention(*x_qkv2)) if x_qkv2 is not None else None  # image-only (MMDiT-X)
        # post_attention, in two halves: both streams' attention residuals first, so that the joint
        # output is freed before the MLPs run (the peak of the layer)
        x = self.x_block.attn_residual(x, joint[:, L:], x_attn2, x_mods)           # (B, T, D)
        del x_attn2
        if self.context_block.pre_only:
            context = None
        else:
            context = self.context_block.attn_residual(context, joint[:, :L], None, ctx_mods)   # (B, L, D)
        del joint
        if context is not None:
            context = self.context_block.mlp_residual(context, ctx_mods)
        return context, self.x_block.mlp_residual(x, x_mods)


class VectorEmbedder(nn.Module):
    """The pooled text vector (B, 2048) -> Linear -> SiLU -> Linear -> (B, D). Keys `mlp.0`, `mlp.2`."""

    def __init__(self, input_dim: int, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(input_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, y):
        return self.mlp(y)


class MMDiT(nn.Module):
    """forward(x, t, y, context, skip_layers=()) -> the flow velocity, as the official `MMDiTX.forward`."""

    def __init__(self, config: MMDiTConfig = SD3_MEDIUM):
        super().__init__()
        self.config = config
        D, nh, M = config.hidden_size, config.num_heads, config.pos_embed_max_size
        bad = [i for i in config.x_block_self_attn_layers if not 0 <= i < config.depth]
        if bad:
            raise ValueError(f"x_block_self_attn_layers {bad} are not layers of a depth-{config.depth} model "
                             f"(0..{config.depth - 1})")
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        self.y_embedder = VectorEmbedder(config.adm_in_channels, D)
        self.context_embedder = nn.Linear(config.context_dim, D)
        # Stored in the checkpoint (not recomputed, unlike DiT's): a new model starts from the sin-cos
        # table diffusers builds for it (positions arange(M) / (M / 64), base grid 64 patches).
        pos_embed = torch.empty(1, M * M, D)                     # on the meta device when built for loading
        if not pos_embed.is_meta:
            pos_embed.copy_(get_2d_sincos_pos_embed(D, M, base_size=64)[None])
        self.register_buffer("pos_embed", pos_embed, persistent=True)
        self.joint_blocks = nn.ModuleList([
            JointBlock(D, nh, config.mlp_ratio, pre_only=i == config.depth - 1, qk_norm=config.qk_norm,
                       x_block_self_attn=i in config.x_block_self_attn_layers) for i in range(config.depth)])
        self.final_layer = FinalLayer(D, config.patch_size, config.out_channels)

    def cropped_pos_embed(self, h: int, w: int):
        """The stored M x M table, centre-cropped to the h x w token grid: (1, h*w, D)."""
        M = self.config.pos_embed_max_size
        if h > M or w > M:
            p8 = self.config.patch_size * 8
            raise ValueError(f"a {h}x{w} token grid is larger than the position table ({M}x{M} patches): this model "
                             f"makes images of at most {M * p8}x{M * p8} pixels")
        top, left = (M - h) // 2, (M - w) // 2
        table = self.pos_embed.view(1, M, M, -1)[:, top:top + h, left:left + w]     # (1, h, w, D)
        return table.reshape(1, h * w, -1)

    def forward(self, x, t, y=None, context=None, skip_layers=()):
        """x: (B, 16, H, W) latents on the flow path, t: (B,) timesteps sigma * 1000, y: (B, 2048)
        pooled text, context: (B, L, 4096) text states; `skip_layers`: layer indices to leave out
        (skip-layer guidance). Returns the velocity (B, 16, H, W)."""
        if context is None:
            raise ValueError("MM-DiT needs the text states `context` (B, L, 4096): its joint attention has no "
                             "text-free path")
        bad = [i for i in skip_layers if not 0 <= i < self.config.depth]
        if bad:
            raise ValueError(f"skip_layers {bad} are not layers of this depth-{self.config.depth} model "
                             f"(0..{self.config.depth - 1})")
        p = self.config.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        x = self.x_embedder(x) + self.cropped_pos_embed(h, w).to(x.dtype)           # (B, T, D)
        c = self.t_embedder(t)                                                       # (B, D)
        if y is not None:
            c = c + self.y_embedder(y)
        context = self.context_embedder(context)                                     # (B, L, D)
        for i, block in enumerate(self.joint_blocks):
            if i in skip_layers:
                continue
            context, x = block(context, x, c)
        x = self.final_layer(x, c)                                                   # (B, T, p*p*C)
        return unpatchify(x, p, h, w)                                                # (B, C, H, W)

