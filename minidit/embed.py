"""Embeddings shared by the DiT family: patches, timesteps, class labels, 2-D and temporal positions.

Papers: DiT (Peebles & Xie, arXiv:2212.09748) §3.1-3.2; ViT (arXiv:2010.11929) for patches;
MAE (arXiv:2111.06377) for the fixed 2-D sin-cos table; PixArt-α (arXiv:2310.00426) for its
`base_size` / `pe_interpolation` stretching; Open-Sora (hpcaitech/Open-Sora `opensora/models/layers/
blocks.py`) for the temporal sin-cos table and RoPE on the time axis (RoFormer, arXiv:2104.09864).
Official code: facebookresearch/DiT `models.py`, PixArt-alpha/PixArt-sigma `diffusion/model/nets/PixArt.py`.

Two conventions that look arbitrary but are fixed by the released weights (each has a test):
  * the timestep embedding is [cos, sin] (cos first),
  * the 2-D position table is [sin, cos] per axis (sin first) with the w axis in the first half.

Glossary (paper symbol | code name | checkpoint key)
  p            | patch_size                    | x_embedder.proj.weight.shape[-1]
  D            | hidden_size                   | x_embedder.proj.weight.shape[0]
  t_freq (256) | frequency_embedding_size      | t_embedder.mlp.0.weight.shape[1]
  null class ∅ | num_classes (the last row)    | y_embedder.embedding_table.weight[num_classes]

Shape legend: B batch, C channels, H W latent size, p patch, h w = H/p W/p, T = h*w tokens, D width.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import nn

# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def patchify(x, p: int):
    """Cut (B, C, H, W) into non-overlapping p x p patches -> (B, T, C*p*p), tokens row-major.

    Each token is ordered (c, row, col), the order of a Conv2d weight's (C, p, p) dims, so
    `patchify(x, p) @ conv.weight.flatten(1).T + conv.bias` equals the strided convolution
    `PatchEmbed` uses.
    """
    B, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size {p}")
    x = x.reshape(B, C, H // p, p, W // p, p)                     # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 1, 3, 5)                               # (B, h, w, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)           # (B, T, C*p*p)


def unpatchify(x, p: int, h: int, w: int):
    """Inverse of the final layer's token layout: (B, T, p*p*C) -> (B, C, h*p, w*p).

    The final Linear's output channel index is (row*p + col)*C + c — note this differs from
    `patchify`'s (c, row, col) order; it is what the official `unpatchify` einsum 'nhwpqc->nchpwq'
    fixes, so the released final-layer weights need exactly this order.
    """
    B, T, K = x.shape
    if T != h * w or K % (p * p):
        raise ValueError(f"cannot unpatchify {tuple(x.shape)} into a {h}x{w} grid of {p}x{p} patches")
    C = K // (p * p)
    x = x.reshape(B, h, w, p, p, C)                               # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)                               # (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, w * p)                          # (B, C, H, W)


class PatchEmbed(nn.Module):
    """Linear patch embedding as a strided convolution (timm `PatchEmbed`, key `proj`)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x):
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"latent size {tuple(x.shape[-2:])} is not divisible by the patch size {p}")
        # The conv output is D-major; make the token stream row-major once, or every residual add
        # keeps the strided layout and each LayerNorm / Linear of every block copies it (~10% slower).
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()   # (B, T, D)


# --------------------------------------------------------------------------------------------
# Timesteps and labels
# --------------------------------------------------------------------------------------------


def timestep_embedding(t, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0):
    """Sinusoidal embedding of (possibly fractional) timesteps: (B,) -> (B, dim), [cos | sin].

        freq_k = max_period ** (-k / (half - freq_shift)),  k = 0 .. half-1
        emb    = [cos(t * freq), sin(t * freq)]

    `freq_shift=0` is the official DiT/PixArt/SD3 code. diffusers' DiT uses `freq_shift=1`
    (`downscale_freq_shift=1`), which changes the frequencies; see `DiTConfig.timestep_freq_shift`.
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / (half - freq_shift))    # (half,)
    args = t[:, None].float() * freqs[None]                                # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)            # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t -> sinusoid (256) -> Linear -> SiLU -> Linear -> (B, D). Keys `mlp.0`, `mlp.2`."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256, freq_shift: float = 0.0):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.freq_shift = freq_shift
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t):
        t_freq = timestep_embedding(t, self.frequency_embedding_size, freq_shift=self.freq_shift)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))                # (B, D)


class LabelEmbedder(nn.Module):
    """Class label -> (B, D), with label dropout for classifier-free guidance.

    With `dropout_prob > 0` the table has one extra row, index `num_classes`: the "null" class that
    stands for "no label". Training replaces a random `dropout_prob` fraction of labels by it; at
    sampling time the unconditional half of CFG uses it (DiT's null class = 1000).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels, force_drop_ids=None, generator=None):
        """Replace labels by the null class: randomly (training) or where `force_drop_ids == 1`."""
        if force_drop_ids is None:
            u = torch.rand(labels.shape[0], device=labels.device, generator=generator)
            drop = u < self.dropout_prob
        else:
            drop = force_drop_ids == 1
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels, train: bool = False, force_drop_ids=None, generator=None):
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids, generator)
        return self.embedding_table(labels)                                  # (B, D)


# --------------------------------------------------------------------------------------------
# Fixed sin-cos position embeddings
# --------------------------------------------------------------------------------------------


def get_1d_sincos_pos_embed(embed_dim: int, pos):
    """Positions (M,) -> (M, embed_dim) = [sin(pos * omega), cos(pos * omega)], float64.

    omega_k = 1 / 10000^(k / (embed_dim/2)),  k = 0 .. embed_dim/2 - 1   (SIN FIRST)
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64, device=pos.device) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega                                              # (D/2,)
    out = pos.to(torch.float64).reshape(-1)[:, None] * omega[None]          # (M, D/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)               # (M, D)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size, base_size=None, interpolation_scale: float = 1.0):
    """The fixed 2-D table for an h x w token grid -> (h*w, embed_dim) float32, tokens row-major.

    Positions along each axis are  arange(n) / (n / base_size) / interpolation_scale, so a grid
    of any size is stretched to span [0, base_size / interpolation_scale). DiT: base_size = n,
    scale 1 (positions 0..n-1). PixArt: base_size = training tokens per side and
    `pe_interpolation` = resolution/512, so every PixArt model sees positions in [0, 32).
    The first half of the channels encodes the w (column) coordinate, the second half h.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sin-cos table, got {embed_dim}")
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    # The official code computes the grid in float32 (np.arange(..., dtype=np.float32)), then float64.
    base_h = h if base_size is None else base_size
    base_w = w if base_size is None else base_size
    # Built on the CPU whatever the default device (float64 does not exist on every accelerator).
    grid_h = torch.arange(h, dtype=torch.float32, device="cpu") / (h / base_h) / interpolation_scale
    grid_w = torch.arange(w, dtype=torch.float32, device="cpu") / (w / base_w) / interpolation_scale
    # Token (row i, col j) = [emb(grid_w[j]) | emb(grid_h[i])]: the official meshgrid + concat, built
    # from the two 1-D tables so no (T, D) float64 table is materialised (~6x less peak memory).
    emb_w = get_1d_sincos_pos_embed(embed_dim // 2, grid_w).float()         # (w, D/2)  w first
    emb_h = get_1d_sincos_pos_embed(embed_dim // 2, grid_h).float()         # (h, D/2)
    table = torch.cat([emb_w[None].expand(h, w, -1), emb_h[:, None].expand(h, w, -1)], dim=-1)  # (h, w, D)
    return table.reshape(h * w, embed_dim)                                  # (T, D)


def pos_embed_temporal(embed_dim: int, num_frames: int, scale: float = 1.0):
    """The 1-D sin-cos table of a video's time axis: (num_frames, embed_dim) float32, [sin | cos].

    Frame f sits at position f / scale (Open-Sora's `time_scale`, 1.0 in every released config) and
    is encoded like one axis of the 2-D table: omega_k = 10000^(-k/(D/2)), sin first. STDiT adds it
    to the temporal sequences of its first block only (`pos_embed_temporal`, a recomputed buffer).
    """
    pos = torch.arange(num_frames, dtype=torch.float64) / scale      # the official np.arange / scale: float64
    return get_1d_sincos_pos_embed(embed_dim, pos).float()            # (F, D)


@functools.lru_cache(maxsize=8)
def cached_2d_sincos_pos_embed(embed_dim: int, h: int, w: int, base_size=None, interpolation_scale: float = 1.0,
                               device=None, dtype=None):
    """`get_2d_sincos_pos_embed` of an h x w grid, cast and moved to `device` once: (T, embed_dim).

    Models call this in every forward. The table is not a buffer (the loader could not fill it, and
    its size follows the input), and rebuilding it or copying a CPU copy to the GPU at every
    denoising step would cost time; so it is cached per (grid, device, dtype). At most 8 tables are
    kept (a 2048^2 PixArt table is 75 MB in float32); `cached_2d_sincos_pos_embed.cache_clear()`
    frees them.
    """
    table = get_2d_sincos_pos_embed(embed_dim, (h, w), base_size=base_size, interpolation_scale=interpolation_scale)
    return table.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE): Hunyuan-DiT in 2-D, the video DiT in 3-D
# --------------------------------------------------------------------------------------------
# RoPE (Su et al., arXiv:2104.09864) adds nothing to the tokens: it ROTATES each pair of channels
# of q and k by an angle proportional to the position, so q·k depends on the positions only through
# their difference. Hunyuan-DiT (`hydit/modules/posemb_layers.py`) rotates INTERLEAVED pairs
# (x[2i], x[2i+1]), the LLaMA convention, not the two halves (GPT-NeoX's `rotate_half`); a head of
# width hd uses hd/2 channels for the w coordinate (first) and hd/2 for h.


def rope_crop(th: int, tw: int, base_size: int = 32):
    """Where an th x tw token grid sits in a base_size x base_size box (Hunyuan's
    `get_fill_resize_and_crop`): its aspect ratio is kept, the longer side fills the box and the
    shorter one is centred. Returns ((top, left), (bottom, right)), ints."""
    if th <= 0 or tw <= 0:
        raise ValueError(f"the token grid must be positive, got {th} x {tw}")
    if th / tw > 1:                         # taller than wide: the height fills the box
        rh, rw = base_size, int(round(base_size / th * tw))
    else:
        rh, rw = int(round(base_size / tw * th)), base_size
    top, left = int(round((base_size - rh) / 2.0)), int(round((base_size - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


def rope_positions(start: float, stop: float, num: int, convention: str = "official"):
    """`num` positions from `start` towards `stop`, end excluded, float32 (num,).

    official:  start + (stop - start) * arange(num) / num      (np.linspace(..., endpoint=False))
    diffusers: linspace(start, stop * (num - 1) / num, num)     (diffusers >= 0.32, `get_2d_rotary_pos_embed`)
    The two agree only when start == 0, i.e. for square images; a non-square Hunyuan image has a
    start > 0 on its shorter side, where diffusers' positions are squeezed (docs/checkpoints.md).
    """
    if convention == "official":       # numpy's order of operations: arange * step + start, in float64
        pos = torch.arange(num, dtype=torch.float64) * ((stop - start) / num) + start
    elif convention == "diffusers":
        pos = torch.linspace(start, stop * (num - 1) / num, num, dtype=torch.float32)
    else:
        raise ValueError(f"convention must be 'official' or 'diffusers', not {convention!r}")
    return pos.float()


def rope_1d(dim: int, positions, theta: float = 10000.0):
    """cos and sin tables (S, dim) for positions (S,): pair i of the dim channels turns by the angle
    positions * theta^(-2i/dim), and each angle is repeated for the two channels of its pair
    (`repeat_interleave(2)`: interleaved pairs). float32, as the official code computes them."""
    if dim % 2:
        raise ValueError(f"a RoPE axis needs an even number of channels, got {dim}")
    freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)       # (dim/2,)
    angles = torch.outer(torch.as_tensor(positions, dtype=torch.float32), freqs)       # (S, dim/2)
    return angles.cos().repeat_interleave(2, dim=1), angles.sin().repeat_interleave(2, dim=1)


def rope_nd(dims, axes):
    """RoPE over several axes: `axes[k]` (S,) is each token's coordinate on axis k, encoded in dims[k]
    channels; the tables are concatenated in that order -> cos, sin (S, sum(dims))."""
    tables = [rope_1d(d, a) for d, a in zip(dims, axes, strict=True)]
    return torch.cat([c for c, _ in tables], dim=1), torch.cat([s for _, s in tables], dim=1)


def get_2d_rope(head_dim: int, th: int, tw: int, base_size: int | None = 32, convention: str = "official"):
    """Hunyuan-DiT's image RoPE for an th x tw token grid -> cos, sin, each (th*tw, head_dim).

    base_size=32 is the released models' "base512" grid (512 px / 8 (VAE) / 2 (patch)): the grid is
    fitted into a 32 x 32 box (`rope_crop`), so at 1024^2 (64 x 64 tokens) the positions are
    0, 0.5, ..., 31.5 on both axes; base_size=None gives the plain 0..n-1 ("extend").
    Tokens are row-major; each head's first head_dim/2 channels rotate with the w (column)
    coordinate and the last head_dim/2 with h, as the official meshgrid(w, h) orders them.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head width divisible by 4, got {head_dim}")
    if base_size is None:
        (top, left), (bottom, right) = (0, 0), (th, tw)
    else:
        (top, left), (bottom, right) = rope_crop(th, tw, base_size)
    ph = rope_positions(top, bottom, th, convention)                    # (th,) row coordinates
    pw = rope_positions(left, right, tw, convention)                    # (tw,) column coordinates
    w_of_token = pw[None, :].expand(th, tw).reshape(-1)                 # (T,)
    h_of_token = ph[:, None].expand(th, tw).reshape(-1)
    return rope_nd((head_dim // 2, head_dim // 2), (w_of_token, h_of_token))


def rope_temporal(head_dim: int, num_frames: int, theta: float = 10000.0):
    """1-D RoPE over a video's frames (Open-Sora 1.2's temporal attention) -> cos, sin (num_frames, head_dim).

    Every channel of a head rotates with the frame index f = 0 .. F-1 (dim = head_dim), interleaved
    pairs, freqs theta^(-2i/hd): the `rotary_embedding_torch.RotaryEmbedding(dim=head_dim)
    .rotate_queries_or_keys` the official code uses, applied with `apply_rope(q, cos, sin)` to
    q, k of shape (B*S, nh, F, hd).
    """
    return rope_1d(head_dim, torch.arange(num_frames, dtype=torch.float32), theta)


def rotate_pairs(x):
    """(..., 2i, 2i+1) -> (..., -x[2i+1], x[2i]): multiplying each pair, read as a complex number, by i."""
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([-b, a], dim=-1).flatten(-2)


def apply_rope(x, cos, sin):
    """Rotate x (..., S, hd) by the tables (S, hd): x * cos + rotate_pairs(x) * sin, computed in
    float32 and returned in x's dtype (as the official `apply_rotary_emb`)."""
    xf = x.float()
    return (xf * cos + rotate_pairs(xf) * sin).to(x.dtype)
