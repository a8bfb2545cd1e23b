"""STDiT (Open-Sora 1.0): PixArt-α's blocks with a temporal self-attention added to each.

Official code: hpcaitech/Open-Sora v1.0 `opensora/models/stdit/stdit.py` (`STDiT`, `STDiT-XL/2`),
`opensora/models/layers/blocks.py`; configs `configs/opensora/inference/16x{256x256,512x512}.py`.
Report: "Open-Sora: Democratizing Efficient Video Production for All" (v1.0 release notes, 2024;
the later report is arXiv:2412.20404). Checkpoints (hf `hpcai-tech/Open-Sora`):
`OpenSora-v1-16x256x256.pth`, `OpenSora-v1-HQ-16x256x256.pth`, `OpenSora-v1-HQ-16x512x512.pth`, flat
state dicts whose keys are this module's attribute names (`weights_loader.load_stdit`).

    video latents (B, 4, F0, H0, W0) --PatchEmbed3D (1,2,2)--> (B, F*S, D) + pos_embed (2-D, per frame)
    t0 = t_block(t_embedder(t)), y = y_embedder(T5 states, 120 tokens)      as PixArt-α
    N x STDiTBlock:
        x = x + gate_msa * spatial_attn(modulate(norm1(x)))      attn over (B*F, S, D): each frame
        x = x + gate_msa * temporal_attn(x [+ tpe in block 0])   attn_temp over (B*S, F, D): no norm,
                                                                 no modulation, the SAME gate_msa
        x = x + cross_attn(x, y);  x = x + gate_mlp * mlp(modulate(norm2(x)))   as PixArt-α
    T2IFinalLayer(x, t) -> unpatchify3d -> (B, 8, F0, H0, W0)   [eps | v] (IDDPM learned range)

Why it could start from PixArt-α (as Open-Sora 1.0 did): `attn_temp.proj` is zero-initialised, so
at step 0 every temporal branch adds 0 and each frame goes through exactly PixArt-α's network
(`tests/test_stdit.py` and `tests/test_stdit_loading.py` check this numerically). The x_embedder
weight starts as PixArt's Conv2d weight with a time axis of 1 (`weights_loader.opensora.stdit_from_pixart`).

`attention="full"` (a forward argument) is NOT the released model: the same weights with `attn`
over all F*S tokens of a clip and `attn_temp` unused (the temporal table is added to block 0's
attention input); it exists to compare the cost of full spacetime attention
(`benchmarks/stdit_forward.py`).

Glossary (paper/official | code name | checkpoint key)
  spatial attention     | attn                 | blocks.i.attn.{qkv,proj}.*
  temporal attention    | attn_temp            | blocks.i.attn_temp.{qkv,proj}.*  (proj zero-init)
  spatial pos. table    | pos_embed (computed) | pos_embed (1, S, D): positions arange / space_scale
  temporal pos. table   | pos_embed_temporal   | pos_embed_temporal (1, F, D): arange / time_scale
  T, S (official)       | F, S                 | frames of tokens, tokens per frame
  (other keys: as minidit.pixart, α-512 layout: t_embedder, t_block, y_embedder, blocks.i.*, final_layer)

Shape legend: B batch, C channels, F0 H0 W0 latent frames/height/width, F H W token grid
(patch (1,2,2): F = F0, H = H0/2, W = W0/2), S = H*W, N = F*S, L caption tokens, D width.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

import torch
from torch import nn

from .attention import Attention
from .embed import cached_2d_sincos_pos_embed, pos_embed_temporal
from .errors import InputError
from .pixart import (CAPTION_TOKENS, PixArtBlock, T2IFinalLayer, conditioning_embedders, embed_caption,
                     initialize_pixart_weights, t2i_modulate)
from .spacetime import (ATTENTION_MODES, PatchEmbed3D, spacetime_attention, spatial_attention,
                        temporal_attention, token_grid, unpatchify3d)


@dataclass(frozen=True)
class STDiTConfig:
    """The official `STDiT(...)` keyword arguments that shape the weights or the computation."""
    input_size: tuple[int, int, int] = (16, 32, 32)   # latent (frames, height, width) at training
    in_channels: int = 4
    patch_size: tuple[int, int, int] = (1, 2, 2)      # tubelet (pt, ph, pw)
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1
    pred_sigma: bool = True
    caption_channels: int = 4096
    model_max_length: int = CAPTION_TOKENS["alpha"]   # 120 T5 tokens
    space_scale: float = 1.0                          # spatial positions arange(n) / space_scale
    time_scale: float = 1.0                           # temporal positions arange(F) / time_scale

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.input_size) != 3 or len(self.patch_size) != 3:
            raise ValueError(f"input_size and patch_size are (frames, height, width): got {self.input_size}, "
                             f"{self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        token_grid(self.input_size, self.patch_size)

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def grid(self) -> tuple[int, int, int]:
        """(F, H, W) tokens at the training size."""
        return token_grid(self.input_size, self.patch_size)


class STDiTBlock(PixArtBlock):
    """A PixArt block plus `attn_temp`: spatial attn, temporal attn (same gate_msa), cross-attn, MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__(hidden_size, num_heads, mlp_ratio)
        self.attn_temp = Attention(hidden_size, num_heads, qkv_bias=True)

    def forward(self, x, y, t0, mask=None, *, frames: int, tpe=None, attention: str = "factorized"):
        """x (B, F*S, D) tokens in T-H-W order, y (B, L, D), t0 (B, 6D), mask (B, L) True = real token,
        tpe (1, F, D) temporal table or None (only block 0 gets it)."""
        F = frames
        S = x.shape[1] // F
        shift_msa, scale_msa, gate_msa, *mlp = self.modulation(t0)             # (B, 1, D) each
        x_m = t2i_modulate(self.norm1(x), shift_msa, scale_msa)                # (B, N, D)
        if attention == "factorized":
            x = torch.addcmul(x, gate_msa, spatial_attention(self.attn, x_m, F, S))
            # the temporal branch reads the residual stream itself: no norm, no modulation
            x = torch.addcmul(x, gate_msa, temporal_attention(self.attn_temp, x, F, S, tpe))
        else:                                                                  # "full": see the module docstring
            if tpe is not None:
                x_m = (x_m.reshape(x.shape[0], F, S, -1) + tpe.reshape(1, F, 1, -1)).flatten(1, 2)
            x = torch.addcmul(x, gate_msa, spacetime_attention(self.attn, x_m))
        x = self.cross_attn_residual(x, y, mask)
        return self.mlp_residual(x, *mlp)                                      # (B, N, D)


class STDiT(nn.Module):
    """Open-Sora 1.0's STDiT: forward(x_t (B, C, F0, H0, W0), timestep, y, mask) -> [eps | v]."""

    def __init__(self, config: STDiTConfig = STDiTConfig()):
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed3D(c.patch_size, c.in_channels, D)
        self.t_embedder, self.t_block, self.y_embedder = conditioning_embedders(c)     # PixArt's, same keys
        self.blocks = nn.ModuleList([STDiTBlock(D, c.num_heads, c.mlp_ratio) for _ in range(c.depth)])
        # T2IFinalLayer's Linear has patch^2 * C_out rows; with "patch" 1 it has prod(tubelet) * C_out
        self.final_layer = T2IFinalLayer(D, 1, prod(c.patch_size) * c.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """PixArt's initialisation, then `attn_temp.proj` = 0 (the official `initialize_temporal`)."""
        initialize_pixart_weights(self)
        for block in self.blocks:
            nn.init.zeros_(block.attn_temp.proj.weight)
            nn.init.zeros_(block.attn_temp.proj.bias)

    def pos_embed(self, h: int, w: int, device=None, dtype=None):
        """The 2-D sin-cos table of an h x w token grid, positions arange / space_scale: (1, S, D)."""
        c = self.config
        return cached_2d_sincos_pos_embed(c.hidden_size, h, w, None, float(c.space_scale), device, dtype)[None]

    def pos_embed_temporal(self, frames: int, device=None, dtype=None):
        """The 1-D sin-cos table of F token frames, positions arange / time_scale: (1, F, D)."""
        c = self.config
        return pos_embed_temporal(c.hidden_size, frames, c.time_scale).to(device=device, dtype=dtype)[None]

    def forward(self, x, timestep, y, mask=None, *, attention: str = "factorized"):
        """x (B, C, F0, H0, W0) noisy video latents; timestep (B,) 0..999; y (B, L, C_cap) T5 states
        (or the official (B, 1, L, C_cap)); mask (B, L), 1 = real token. Returns (B, C_out, F0, H0, W0).

        The official model only runs at its training size (its tables are fixed buffers); here the
        tables are computed for the input's grid, so at the training size both agree exactly."""
        if attention not in ATTENTION_MODES:
            raise InputError(f"attention={attention!r} is not one of {ATTENTION_MODES}")
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise InputError(f"STDiT takes video latents (B, {c.in_channels}, frames, height, width), "
                             f"got {tuple(x.shape)}")
        B = x.shape[0]
        F, H, W = token_grid(x.shape[2:], c.patch_size)
        x = self.x_embedder(x)                                                 # (B, F*S, D)
        x = (x.unflatten(1, (F, H * W)) + self.pos_embed(H, W, x.device, x.dtype)).flatten(1, 2)  # per frame
        t = self.t_embedder(timestep)                                          # (B, D)
        t0 = self.t_block(t)                                                   # (B, 6D)
        y, mask = embed_caption(self.y_embedder, y, mask, B, self.training)   # (B, L, D), (B, L) bool
        tpe = self.pos_embed_temporal(F, x.device, x.dtype)                    # (1, F, D)
        for i, block in enumerate(self.blocks):
            x = block(x, y, t0, mask, frames=F, tpe=tpe if i == 0 else None, attention=attention)
        x = self.final_layer(x, t)                                             # (B, N, pt*ph*pw*C_out)
        return unpatchify3d(x, F, H, W, c.patch_size, c.out_channels)          # (B, C_out, F0, H0, W0)


# --------------------------------------------------------------------------------------------
# Presets: STDiT-XL/2 (28 x 1152, 16 heads, tubelet (1, 2, 2)) at the two released resolutions.
# The configs differ in the latent size and space_scale: 256^2 -> 32 x 32 latents (16 x 16 tokens),
# space_scale 0.5; 512^2 -> 64 x 64 latents (32 x 32 tokens), space_scale 1. Both span positions
# [0, 32) on each axis, as PixArt-α-512 (which both were initialised from). time_scale 1, 16 frames.
# --------------------------------------------------------------------------------------------
STDIT_XL_2 = STDiTConfig(depth=28, hidden_size=1152, patch_size=(1, 2, 2), num_heads=16)
STDIT_XL_2_16x256 = replace(STDIT_XL_2, input_size=(16, 32, 32), space_scale=0.5, time_scale=1.0)
STDIT_XL_2_16x512 = replace(STDIT_XL_2, input_size=(16, 64, 64), space_scale=1.0, time_scale=1.0)

PRESETS = {
    "OpenSora-v1-16x256x256": STDIT_XL_2_16x256,
    "OpenSora-v1-HQ-16x256x256": STDIT_XL_2_16x256,
    "OpenSora-v1-HQ-16x512x512": STDIT_XL_2_16x512,
}
