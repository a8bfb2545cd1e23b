"""A class- and motion-conditioned video DiT on spacetime patches: the network of the built-in video model.

No official checkpoint: this is the project's own small model (`minidit/pipelines/toy_video.py`
trains and ships it), assembled from the family's parts, nothing re-written:
  * DiT's block, adaLN-Zero, label embedder, final layer and initialisation (Peebles & Xie,
    arXiv:2212.09748; `minidit/dit.py`, facebookresearch/DiT `models.py`),
  * tubelet embedding and the factorized reshapes of `minidit/spacetime.py` (ViViT, arXiv:2103.15691;
    the Sora report's "spacetime patches"),
  * the 2-D spatial and 1-D temporal sin-cos tables of `minidit/embed.py` (Open-Sora's
    `pos_embed` + `pos_embed_temporal`, hpcaitech/Open-Sora `opensora/models/stdit/stdit.py`).

    x_t (B, C, F0, H0, W0) --tubelets (pt, p, p)--> (B, F*S, D) + spatial pos (per frame) + temporal pos
    c = t_embedder(t) + y_embedder(digit) + motion_embedder(direction)                (B, D)
    depth x DiTBlock(x, c), attending either
        "factorized": block 0, 2, 4 ... inside each frame (B*F, S, D), block 1, 3, 5 ... across the
                      frames at each position (B*S, F, D): Latte's variant 1 (arXiv:2401.03048 §3.2),
                      Open-Sora 1.2's alternating spatial_blocks / temporal_blocks
        "full":       over all F*S tokens of the clip (B, F*S, D)
    FinalLayer(x, c) -> (B, F*S, pt*p*p*C_out) --unpatchify3d--> (B, C_out, F0, H0, W0)

The two modes have the same parameters, key for key (a DiTBlock does not know how its tokens are
grouped; the MLP is per token either way), so "factorized vs full at equal budget" compares the
attention pattern alone. Classifier-free guidance: in train mode the digit and the direction are
dropped *together* (one null condition, `class_dropout_prob`), so the unconditional model is the
one with both null rows.

Glossary (paper symbol | code name | state-dict key)
  tubelet (pt, p, p) | temporal_patch_size, patch_size | x_embedder.proj.weight.shape[2:]
  class y            | num_classes (the null row last)  | y_embedder.embedding_table.weight
  motion m           | num_motions (the null row last)  | motion_embedder.embedding_table.weight
  γ, β, α            | adaLN-Zero shift/scale/gate      | blocks.i.adaLN_modulation.1

Shape legend: B batch, C channels, F0 H0 W0 frames/height/width, (pt, p, p) tubelet, F = F0/pt,
H = H0/p, W = W0/p the token grid, S = H*W tokens per frame, D width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .dit import DiT, DiTBlock, FinalLayer
from .embed import LabelEmbedder, TimestepEmbedder, cached_2d_sincos_pos_embed, pos_embed_temporal
from .errors import InputError
from .spacetime import (ATTENTION_MODES, PatchEmbed3D, spacetime_attention, spatial_attention, temporal_attention,
                        token_grid, unpatchify3d)


@dataclass(frozen=True)
class VideoDiTConfig:
    input_size: int = 16              # H0 = W0 pixels (or latent pixels)
    num_frames: int = 8               # F0
    patch_size: int = 4               # p: tubelet height and width
    temporal_patch_size: int = 1      # pt: tubelet length in frames
    in_channels: int = 1              # C
    hidden_size: int = 64             # D
    depth: int = 4                    # blocks; "factorized" alternates spatial, temporal (even depth)
    num_heads: int = 4
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1   # joint dropout of (digit, direction) for CFG; > 0 adds the null rows
    num_classes: int = 10
    num_motions: int = 4
    attention: str = "factorized"     # "factorized" | "full"
    learn_sigma: bool = False         # output [eps | v] (2C channels) instead of one prediction (C)

    def __post_init__(self):
        if self.attention not in ATTENTION_MODES:
            raise InputError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}")
        if self.attention == "factorized" and self.depth % 2:
            raise InputError(f"factorized attention alternates spatial and temporal blocks: depth must be even, "
                             f"got {self.depth}")

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def tubelet(self) -> tuple[int, int, int]:
        return self.temporal_patch_size, self.patch_size, self.patch_size


class VideoDiT(nn.Module):
    """forward(x_t, t, y, motion) -> the prediction for a clip (B, C_out, F0, H0, W0)."""

    def __init__(self, config: VideoDiTConfig = VideoDiTConfig()):
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.x_embedder = PatchEmbed3D(config.tubelet, config.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        self.y_embedder = LabelEmbedder(config.num_classes, D, config.class_dropout_prob)
        self.motion_embedder = LabelEmbedder(config.num_motions, D, config.class_dropout_prob)
        self.blocks = nn.ModuleList([DiTBlock(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth)])
        # FinalLayer's Linear has p*p*k outputs; with k = pt*C_out that is one tubelet per token
        self.final_layer = FinalLayer(D, config.patch_size, config.temporal_patch_size * config.out_channels)
        DiT.initialize_weights(self)      # DiT's init: xavier, N(0, 0.02) embeddings, adaLN-Zero, zero output
        nn.init.normal_(self.motion_embedder.embedding_table.weight, std=0.02)

    def pos_embed(self, F: int, H: int, W: int, device=None, dtype=None):
        """Fixed sin-cos positions (1, F*S, D): the 2-D table of the H x W grid plus the 1-D table of frame f."""
        D = self.config.hidden_size
        spatial = cached_2d_sincos_pos_embed(D, H, W, device=device, dtype=dtype)       # (S, D)
        temporal = pos_embed_temporal(D, F).to(device=device, dtype=dtype)              # (F, D)
        return (temporal[:, None] + spatial[None]).reshape(1, F * H * W, D)             # (1, F*S, D)

    def condition(self, t, y, motion, force_drop_ids=None):
        """c = t_embedder(t) + y_embedder(y) + motion_embedder(motion): (B, D). In train mode a random
        `class_dropout_prob` of the samples get the null digit AND the null direction; `force_drop_ids`
        (B,) (1 = drop both) decides instead, in any mode."""
        if force_drop_ids is None and self.training and self.config.class_dropout_prob > 0:
            force_drop_ids = (torch.rand(len(y), device=y.device) < self.config.class_dropout_prob).long()
        return (self.t_embedder(t) + self.y_embedder(y, False, force_drop_ids)
                + self.motion_embedder(motion, False, force_drop_ids))                  # (B, D)

    def forward(self, x, t, y, motion, force_drop_ids=None):
        """x: (B, C, F0, H0, W0), t: (B,) timesteps (0..999, fractional for flow), y: (B,) digits,
        motion: (B,) directions (null rows: num_classes, num_motions) -> (B, C_out, F0, H0, W0)."""
        F, H, W = token_grid(x.shape[2:], self.config.tubelet)
        S = H * W
        x = self.x_embedder(x)                                                  # (B, F*S, D)
        x = x + self.pos_embed(F, H, W, x.device, x.dtype)                      # (B, F*S, D)
        c = self.condition(t, y, motion, force_drop_ids)                        # (B, D)
        if self.config.attention == "factorized":
            c_spatial, c_temporal = c.repeat_interleave(F, 0), c.repeat_interleave(S, 0)   # (B*F, D), (B*S, D)
        for i, block in enumerate(self.blocks):
            if self.config.attention == "full":
                x = spacetime_attention(lambda seq: block(seq, c), x)           # (B, F*S, D)
            elif i % 2 == 0:
                x = spatial_attention(lambda seq: block(seq, c_spatial), x, F, S)     # (B*F, S, D) inside
            else:
                x = temporal_attention(lambda seq: block(seq, c_temporal), x, F, S)   # (B*S, F, D) inside
        x = self.final_layer(x, c)                                              # (B, F*S, pt*p*p*C_out)
        return unpatchify3d(x, F, H, W, self.config.tubelet, self.config.out_channels)  # (B, C_out, F0, H0, W0)
