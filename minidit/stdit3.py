"""STDiT3 (Open-Sora 1.2): a text-to-video DiT of separate spatial and temporal blocks.

Paper: Open-Sora (Zheng et al., arXiv:2412.20404, §4 "STDiT"); the blocks are PixArt-α's
(arXiv:2310.00426: adaLN-single, cross-attention to T5), the factorisation ViViT's / Latte's
(arXiv:2103.15691, arXiv:2401.03048). Official code: hpcaitech/Open-Sora v1.2.0
`opensora/models/stdit/stdit3.py` (STDiT3Block, STDiT3Config, STDiT3), `opensora/models/layers/blocks.py`.
Checkpoint: `hpcai-tech/OpenSora-STDiT-v3` (a transformers `PreTrainedModel` folder, `STDiT3-XL/2`,
1,207,643,936 parameters counted from its layout; the README says "1.1B"); the attribute names are
its keys (`weights_loader.load_stdit3`).

    z (B, 4, F, H, W) video latents --PatchEmbed3D (1,2,2)--> (B, F*S, D)  + 2-D sin-cos of each frame
    t = t_embedder(timestep) + fps_embedder(fps)             (B, D)         timestep = t * 1000 (rflow)
    t_mlp = t_block(t)                                       (B, 6D)        adaLN-single, shared by all blocks
    y = y_embedder(T5 states)                                (B, 300, D)
    28 x [ spatial_blocks[i]   attention inside each frame     (B*F, S, D)
           temporal_blocks[i]  attention across frames + RoPE  (B*S, F, D) ]
         each block: x += gate * attn(modulate(norm1 x)); x += cross_attn(x, y); x += gate * mlp(modulate(norm2 x))
    final_layer(x, t) -> unpatchify -> (B, 8, F, H, W)       [x0 - eps | learned sigma, unused by rflow]

The 2-D position table is PixArt's sin-cos with `base_size = round(sqrt(H_tok W_tok))` and
`interpolation_scale = sqrt(height * width) / input_sq_size` (the PIXEL height and width, 512): every
resolution and aspect ratio is stretched onto the positions the 512^2 model saw. The temporal
blocks start as the identity (zero-initialised output projections), so the model begins as an
image model applied to every frame.

Not implemented (each raises a clear error): `x_mask` (image/video conditioning: frames kept at
t = 0, the official `t_mask_select`), `skip_y_embedder` (pre-projected captions), sequence
parallelism, drop-path in training. `enable_flash_attn` / `enable_layernorm_kernel` choose kernels
in the official code; here `minidit.attention` (SDPA) computes the same attention.

Numerics vs the official bfloat16 run: there the timestep is rounded to bfloat16 before its
embedding (t = 966.7 -> 968), the RoPE angles are bfloat16 and the position table float32; here the
timestep embedding and RoPE tables are float32, the sin-cos table float64 then cast.

Glossary (paper symbol | code name | checkpoint key)
  tubelet (1, 2, 2)       | x_embedder            | x_embedder.proj.{weight (D, 4, 1, 2, 2), bias}
  fps condition           | fps_embedder          | fps_embedder.mlp.{0,2}
  S̄ = MLP(t) (shared)     | t_block               | t_block.1 (6D rows)
  E^(i) per block         | scale_shift_table     | {spatial,temporal}_blocks.i.scale_shift_table (6, D)
  QK-norm (RMS, per head) | attn.q_norm, k_norm   | ...attn.q_norm.weight (hd,)
  RoPE on time            | rope_temporal()       | rope.freqs (hd/2,), checked and recomputed by the loader
  ∅ caption               | y_embedder.null_caption() | y_embedder.y_embedding (300, 4096)

Shape legend: B batch, C channels, F frames, H W latent size, (pt, ph, pw) patch, T H' W' token grid,
S = H'*W' tokens per frame, N = T*S, L caption tokens, D width, nh heads, hd head dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, attention, merge_heads
from .embed import apply_rope, cached_2d_sincos_pos_embed, rope_temporal
from .errors import InputError
from .pixart import (CAPTION_TOKENS, PixArtBlock, SizeEmbedder, T2IFinalLayer, conditioning_embedders, embed_caption,
                     t2i_modulate)
from .spacetime import PatchEmbed3D, spatial_attention, temporal_attention, unpatchify3d
from .text.t5 import T5LayerNorm


@dataclass(frozen=True)
class STDiT3Config:
    """The official `STDiT3Config` fields (the `config.json` of `hpcai-tech/OpenSora-STDiT-v3`)."""
    input_size: tuple = (None, None, None)   # unused: every size is computed from the input
    input_sq_size: int = 512                 # the pixel side whose positions the table is stretched to
    in_channels: int = 4
    patch_size: tuple = (1, 2, 2)
    hidden_size: int = 1152
    depth: int = 28                          # spatial AND temporal blocks each
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1          # caption dropout (training)
    pred_sigma: bool = True                  # 2C output channels (the second half is unused by rflow)
    drop_path: float = 0.0                   # training only; not implemented
    caption_channels: int = 4096
    model_max_length: int = CAPTION_TOKENS["sigma"]   # 300 T5 tokens
    qk_norm: bool = True
    enable_flash_attn: bool = False          # kernel choices of the official code (ignored here)
    enable_layernorm_kernel: bool = False
    enable_sequence_parallelism: bool = False
    only_train_temporal: bool = False        # training: freeze all but the temporal blocks
    freeze_y_embedder: bool = False
    skip_y_embedder: bool = False

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"hidden_size {self.hidden_size} / num_heads {self.num_heads} must give an even head width")
        if self.enable_sequence_parallelism or self.skip_y_embedder:
            raise ValueError("minidit's STDiT3 implements neither sequence parallelism nor skip_y_embedder "
                             "(captions already projected): set both to False")

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.pred_sigma else self.in_channels


class Attention3(Attention):
    """Self-attention with the official per-head RMSNorm on q and k (LlamaRMSNorm = T5's RMSNorm,
    eps 1e-6, weights (hd,)) and, in the temporal blocks, RoPE applied after the norm."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool):
        super().__init__(dim, num_heads, qkv_bias=True)
        hd = dim // num_heads
        self.q_norm = T5LayerNorm(hd, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = T5LayerNorm(hd, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, x, rope=None):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)   # 3 x (B, nh, L, hd)
        q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        if rope is not None:                                                  # cos, sin (L, hd)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return self.proj(merge_heads(attention(q, k, v)))                     # (B, L, D)


class STDiT3Block(PixArtBlock):
    """A PixArt block whose self-attention runs inside frames (spatial) or across them (temporal),
    with per-head QK RMSNorm (and RoPE, temporal) in place of PixArt's attention."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qk_norm: bool, temporal: bool):
        super().__init__(hidden_size, num_heads, mlp_ratio)
        self.attn = Attention3(hidden_size, num_heads, qk_norm)
        self.temporal = temporal

    def forward(self, x, y, t_mlp, mask, T: int, S: int, rope=None):
        """x (B, T*S, D), y (B, L, D), t_mlp (B, 6D), mask (B, L) bool or None; rope: temporal blocks."""
        shift_msa, scale_msa, gate_msa, *mlp = self.modulation(t_mlp)                     # (B, 1, D) each
        h = t2i_modulate(self.norm1(x), shift_msa, scale_msa)
        if self.temporal:                                                      # (B*S, T, D) sequences
            h = temporal_attention(lambda seqs: self.attn(seqs, rope), h, T, S)
        else:                                                                  # (B*T, S, D) sequences
            h = spatial_attention(self.attn, h, T, S)
        x = torch.addcmul(x, gate_msa, h)
        del h
        x = self.cross_attn_residual(x, y, mask)
        return self.mlp_residual(x, *mlp)                                      # (B, T*S, D)


class STDiT3(nn.Module):
    """forward(x, timestep, y, mask, fps=, height=, width=) -> (B, C_out, F, H, W)."""

    def __init__(self, config: STDiT3Config = STDiT3Config()):
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed3D(c.patch_size, c.in_channels, D)
        self.t_embedder, self.t_block, self.y_embedder = conditioning_embedders(c)     # PixArt's, same keys
        self.fps_embedder = SizeEmbedder(D)
        self.spatial_blocks = nn.ModuleList(
            [STDiT3Block(D, c.num_heads, c.mlp_ratio, c.qk_norm, temporal=False) for _ in range(c.depth)])
        self.temporal_blocks = nn.ModuleList(
            [STDiT3Block(D, c.num_heads, c.mlp_ratio, c.qk_norm, temporal=True) for _ in range(c.depth)])
        # T2IFinalLayer's Linear(D, p*p*C) with p = 1 and C = pt*ph*pw*C_out: the official (prod(patch) * C_out) rows
        self.final_layer = T2IFinalLayer(D, 1, math.prod(c.patch_size) * c.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        """The official initialisation: xavier Linears, a zero fps_embedder output, and temporal
        blocks that start as the identity (attn / cross-attn / MLP output weights zero)."""
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(_basic_init)
        nn.init.normal_(self.fps_embedder.mlp[0].weight, std=0.02)
        nn.init.zeros_(self.fps_embedder.mlp[0].bias)
        nn.init.zeros_(self.fps_embedder.mlp[2].weight)
        nn.init.zeros_(self.fps_embedder.mlp[2].bias)
        for block in self.temporal_blocks:
            for linear in (block.attn.proj, block.cross_attn.proj, block.mlp.fc2):
                nn.init.zeros_(linear.weight)
        c = self.config
        frozen = ([p for n, p in self.named_parameters() if not n.startswith("temporal_blocks.")]
                  if c.only_train_temporal else []) + (list(self.y_embedder.parameters()) if c.freeze_y_embedder else [])
        for p in frozen:
            p.requires_grad_(False)

    def pos_embed(self, H: int, W: int, height: float, width: float, device=None, dtype=None):
        """The (S, D) sin-cos table of an H x W token grid for a height x width PIXEL video."""
        scale = math.sqrt(height * width) / self.config.input_sq_size
        return cached_2d_sincos_pos_embed(self.config.hidden_size, H, W, round(math.sqrt(H * W)), scale, device, dtype)

    def forward(self, x, timestep, y, mask=None, x_mask=None, *, fps, height, width):
        """x (B, C, F, H, W) latents; timestep (B,) = t * 1000, float; y (B, L, C_cap) T5 states
        (or the official (B, 1, L, C_cap)); mask (B, L) 1 = real token (fewer rows: repeated, as
        for CFG); fps (B,) or a number (the official passes 24; 120 for images); height, width:
        the PIXEL size of the video (numbers, or the official (B,) tensors: their first entry).
        Returns (B, C_out, F, H, W) in the weights' dtype (the official casts it to float32):
        [x0 - eps | learned sigma] (Open-Sora's velocity sign)."""
        c, B = self.config, x.shape[0]
        if x_mask is not None:
            raise InputError("x_mask (conditioning on given frames, the official t_mask_select) is not implemented "
                             "in minidit's STDiT3: only text-to-video sampling is")
        if self.training and c.drop_path > 0:
            raise InputError("drop_path > 0 is not implemented (training only): set drop_path=0")
        if x.ndim != 5:
            raise InputError(f"STDiT3 takes video latents (B, C, F, H, W), got {tuple(x.shape)}")
        height, width = (float(v.flatten()[0]) if torch.is_tensor(v) else float(v) for v in (height, width))
        dtype = self.x_embedder.proj.weight.dtype          # the official forward casts its inputs to the weights'
        x, y = x.to(dtype), y.to(dtype)
        F0, H0, W0 = x.shape[2:]
        pt, ph, pw = c.patch_size            # pad to whole tubelets (the official PatchEmbed3D), cropped at the end
        x = F.pad(x, (0, -W0 % pw, 0, -H0 % ph, 0, -F0 % pt))
        T, H, W = x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw
        S = H * W

        t = self.t_embedder(timestep)                                                      # (B, D)
        fps = torch.as_tensor(fps, dtype=torch.float32, device=x.device).reshape(-1, 1)
        t = t + self.fps_embedder(fps, B)
        t_mlp = self.t_block(t)                                                            # (B, 6D)
        y, mask = embed_caption(self.y_embedder, y, mask, B, self.training)               # (B, L, D), (B, L) bool

        x = self.x_embedder(x)                                                             # (B, T*S, D)
        pos = self.pos_embed(H, W, height, width, x.device, x.dtype)                       # (S, D)
        x = (x.view(B, T, S, -1) + pos).view(B, T * S, -1)
        cos, sin = rope_temporal(c.hidden_size // c.num_heads, T)                          # (T, hd) each
        rope = (cos.to(x.device), sin.to(x.device))
        for spatial, temporal in zip(self.spatial_blocks, self.temporal_blocks):
            x = spatial(x, y, t_mlp, mask, T, S)
            x = temporal(x, y, t_mlp, mask, T, S, rope)
        x = self.final_layer(x, t)                                                         # (B, N, pt*ph*pw*C_out)
        x = unpatchify3d(x, T, H, W, c.patch_size, c.out_channels)                         # (B, C_out, T*pt, ...)
        return x[:, :, :F0, :H0, :W0]


# Presets: the two sizes the official code registers. Only STDiT3-XL/2 was released
# (hpcai-tech/OpenSora-STDiT-v3); no configuration of Open-Sora 1.2 names a 3B checkpoint.
STDIT3_XL_2 = STDiT3Config(depth=28, hidden_size=1152, patch_size=(1, 2, 2), num_heads=16)
STDIT3_3B_2 = replace(STDIT3_XL_2, hidden_size=1872, num_heads=26)
PRESETS = {"STDiT3-XL/2": STDIT3_XL_2, "STDiT3-3B/2": STDIT3_3B_2}
