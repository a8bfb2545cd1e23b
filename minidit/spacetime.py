"""Spacetime patches: video latents as tokens, and the two ways to attend over them.

Papers: Sora technical report ("Video generation models as world simulators", OpenAI 2024: a
diffusion transformer on "spacetime patches"); ViViT (Arnab et al., arXiv:2103.15691) §3 for
tubelet embedding and factorized attention; Latte (Ma et al., arXiv:2401.03048) for the variants
on a DiT; Open-Sora (hpcaitech/Open-Sora, `opensora/models/layers/blocks.py PatchEmbed3D`,
`opensora/models/stdit/stdit.py`) for the released STDiT checkpoints
(`OpenSora-v1-16x256x256.pth`, `OpenSora-v1-HQ-16x{256x256,512x512}.pth`), whose key
`x_embedder.proj.*` is the `PatchEmbed3D` below.

    latents (B, C, F0, H0, W0) --tubelets pt x ph x pw--> (B, N, D),  N = F*S,  S = H*W
    token n = (f, i, j) in T-H-W order: f outer, then the row i, then the column j

    factorized (STDiT, Latte):  spatial  attention inside each frame      (B*F, S, D)   cost ~ F*S^2
                                temporal attention at each position       (B*S, F, D)   cost ~ S*F^2
    full spacetime:             one attention over every token of a clip  (B, F*S, D)   cost ~ (F*S)^2

Glossary (paper symbol | code name | checkpoint key)
  tubelet (pt, ph, pw) | patch                | x_embedder.proj.weight.shape[2:]  (1, 2, 2 in STDiT)
  E (tubelet embed)    | PatchEmbed3D.proj    | x_embedder.proj.{weight (D, C, pt, ph, pw), bias}
  n_t, n_h x n_w       | F, S = H*W           | (token grid: latent frames / pt, latent side / ph...)

Shape legend: B batch, C channels, F0 H0 W0 latent frames/height/width, (pt, ph, pw) tubelet,
F = F0/pt, H = H0/ph, W = W0/pw the token grid, S = H*W tokens per frame, N = F*S tokens per clip,
D width, nh heads, hd = D/nh head width. The official code writes T for F.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import InputError

ATTENTION_MODES = ("factorized", "full")


def _triple(patch) -> tuple[int, int, int]:
    pt, ph, pw = (patch, patch, patch) if isinstance(patch, int) else tuple(int(p) for p in patch)
    if min(pt, ph, pw) < 1:
        raise InputError(f"a tubelet size must be positive, got {(pt, ph, pw)}")
    return pt, ph, pw


def token_grid(latent_shape, patch) -> tuple[int, int, int]:
    """(F0, H0, W0) latent frames/height/width -> (F, H, W) tokens per axis, or an InputError."""
    pt, ph, pw = _triple(patch)
    F0, H0, W0 = (int(s) for s in latent_shape)
    if F0 % pt or H0 % ph or W0 % pw:
        raise InputError(f"latent size {F0}x{H0}x{W0} (frames x height x width) is not divisible by the tubelet "
                         f"{pt}x{ph}x{pw}: crop or pad the video (or its frame count) to a multiple")
    return F0 // pt, H0 // ph, W0 // pw


# --------------------------------------------------------------------------------------------
# Tubelets: 3-D patchify / unpatchify
# --------------------------------------------------------------------------------------------


def patchify3d(x, patch):
    """Cut (B, C, F0, H0, W0) into pt x ph x pw tubelets -> (B, F*H*W, C*pt*ph*pw), T-H-W order.

    Each token is ordered (c, dt, di, dj), the order of a Conv3d weight's (C, pt, ph, pw) dims, so
    `patchify3d(x, p) @ proj.weight.flatten(1).T + proj.bias` is `PatchEmbed3D`'s strided Conv3d.
    """
    pt, ph, pw = _triple(patch)
    B, C = x.shape[:2]
    F, H, W = token_grid(x.shape[2:], (pt, ph, pw))
    x = x.reshape(B, C, F, pt, H, ph, W, pw)                      # (B, C, F, pt, H, ph, W, pw)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)                         # (B, F, H, W, C, pt, ph, pw)
    return x.reshape(B, F * H * W, C * pt * ph * pw)              # (B, N, C*pt*ph*pw)


def unpatchify3d(x, F: int, H: int, W: int, patch, out_channels: int):
    """The final layer's tokens back to a video: (B, F*H*W, pt*ph*pw*C_out) -> (B, C_out, F*pt, H*ph, W*pw).

    F, H, W are the TOKEN grid. The output channel index of a token is ((dt*ph + di)*pw + dj)*C_out + c:
    the official rearrange "B (N_t N_h N_w) (T_p H_p W_p C_out) -> B C_out (N_t T_p) (N_h H_p) (N_w W_p)",
    which the released `final_layer.linear` weights need (with pt = 1 it is the 2-D `unpatchify`'s order).
    """
    pt, ph, pw = _triple(patch)
    B, N, K = x.shape
    if N != F * H * W or K != pt * ph * pw * out_channels:
        raise InputError(f"cannot unpatchify {tuple(x.shape)} into a {F}x{H}x{W} token grid of {pt}x{ph}x{pw} "
                         f"tubelets with {out_channels} channels (needs N = {F * H * W}, "
                         f"K = {pt * ph * pw * out_channels})")
    x = x.reshape(B, F, H, W, pt, ph, pw, out_channels)           # (B, F, H, W, pt, ph, pw, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)                         # (B, C, F, pt, H, ph, W, pw)
    return x.reshape(B, out_channels, F * pt, H * ph, W * pw)     # (B, C, F0, H0, W0)


class PatchEmbed3D(nn.Module):
    """Tubelet embedding as a strided Conv3d (Open-Sora `PatchEmbed3D`, key `proj`): (B, C, F0, H0, W0) -> (B, N, D).

    The official module zero-pads a latent whose size is not a multiple of the tubelet; here that is
    an InputError instead (a padded frame is content the caller did not ask for).
    """

    def __init__(self, patch_size=(1, 2, 2), in_chans: int = 4, embed_dim: int = 1152):
        super().__init__()
        self.patch_size = _triple(patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x):
        if x.ndim != 5:
            raise InputError(f"video latents must be (B, C, frames, height, width), got {tuple(x.shape)}")
        token_grid(x.shape[2:], self.patch_size)                  # the divisibility check
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()   # (B, N, D), T-H-W order


# --------------------------------------------------------------------------------------------
# The factorized reshapes (token order T-H-W: frame f's S tokens are contiguous)
# --------------------------------------------------------------------------------------------


def _check(x, F: int, S: int, what: str):
    if x.ndim != 3 or x.shape[1] != F * S:
        raise InputError(f"{what}: expected (B, F*S = {F}*{S}, D) tokens, got {tuple(x.shape)}")


def to_spatial(x, F: int, S: int):
    """(B, F*S, D) -> (B*F, S, D): each frame is one sequence (attention stays inside a frame)."""
    _check(x, F, S, "to_spatial")
    B, _, D = x.shape
    return x.reshape(B * F, S, D)                                 # (B*F, S, D)  a view


def from_spatial(x, F: int, S: int):
    """(B*F, S, D) -> (B, F*S, D), the inverse of `to_spatial`."""
    BF, _, D = x.shape
    return x.reshape(BF // F, F * S, D)                           # (B, F*S, D)


def to_temporal(x, F: int, S: int):
    """(B, F*S, D) -> (B*S, F, D): each spatial position's F tokens, one per frame, are one sequence."""
    _check(x, F, S, "to_temporal")
    B, _, D = x.shape
    x = x.reshape(B, F, S, D).transpose(1, 2)                     # (B, S, F, D)
    return x.reshape(B * S, F, D)                                 # (B*S, F, D)  a copy


def from_temporal(x, F: int, S: int):
    """(B*S, F, D) -> (B, F*S, D), the inverse of `to_temporal`."""
    BS, _, D = x.shape
    x = x.reshape(BS // S, S, F, D).transpose(1, 2)               # (B, F, S, D)
    return x.reshape(BS // S, F * S, D)                           # (B, F*S, D)


def spatial_attention(attn, x, F: int, S: int):
    """`attn` ((b, n, D) -> (b, n, D), e.g. `minidit.attention.Attention`) within each frame: (B, F*S, D)."""
    return from_spatial(attn(to_spatial(x, F, S)), F, S)


def temporal_attention(attn, x, F: int, S: int, tpe=None):
    """`attn` across frames at each spatial position: (B, F*S, D). `tpe` (1, F, D) or (F, D), a
    temporal position table, is added to the (B*S, F, D) sequences first (STDiT's first block)."""
    xt = to_temporal(x, F, S)                                     # (B*S, F, D)
    if tpe is not None:
        xt = xt + tpe.reshape(1, F, -1)
    return from_temporal(attn(xt), F, S)


def spacetime_attention(attn, x):
    """`attn` over every token of a clip at once: (B, F*S, D), one sequence of N = F*S per clip."""
    return attn(x)


# --------------------------------------------------------------------------------------------
# Cost model: multiply-adds and the attention-score matrix, factorized vs full
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionCost:
    """One layer's self-attention for a batch. flops = 2 x multiply-adds."""
    mode: str
    projection_flops: int      # q, k, v and output projections: 8 N D^2 per attention pass (per clip)
    score_flops: int           # Q K^T and softmax(.) V: 4 L^2 D per sequence of L tokens
    score_elements: int        # the largest score matrix alive at once (B * sequences * nh * L^2)
    score_bytes: int           # score_elements * bytes per element (what the manual path materialises)

    @property
    def flops(self) -> int:
        return self.projection_flops + self.score_flops


def attention_cost(F: int, S: int, D: int, heads: int, mode: str = "factorized", *, batch: int = 1,
                   bytes_per_element: int = 2) -> AttentionCost:
    """FLOPs and score-matrix memory of one layer's self-attention over F frames of S tokens each.

        full:        1 sequence of F*S per clip:   scores = nh (FS)^2,  score flops 4 (FS)^2 D
        factorized:  spatial F sequences of S      scores = F nh S^2,   score flops 4 F S^2 D
                     + temporal S sequences of F   scores = S nh F^2,   score flops 4 S F^2 D
                     (two passes, so two sets of projections: 2 x 8 FS D^2)
    The spatial and temporal score matrices never coexist, so the peak is the larger one. SDPA's
    fused kernels never materialise them (O(N) memory); `score_bytes` is what the manual path needs.
    """
    if mode not in ATTENTION_MODES:
        raise InputError(f"attention mode {mode!r} is not one of {ATTENTION_MODES}")
    N = F * S
    proj = 8 * batch * N * D * D
    if mode == "full":
        return AttentionCost(mode, proj, 4 * batch * N * N * D, batch * heads * N * N,
                             batch * heads * N * N * bytes_per_element)
    spatial, temporal = batch * F * heads * S * S, batch * S * heads * F * F
    return AttentionCost(mode, 2 * proj, 4 * batch * (F * S * S + S * F * F) * D, max(spatial, temporal),
                         max(spatial, temporal) * bytes_per_element)
