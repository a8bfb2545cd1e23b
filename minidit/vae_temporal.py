"""Open-Sora 1.2's video VAE: the SDXL image VAE on every frame, then a causal 3-D VAE that packs
4 frames into 1 (8 x 8 x 4 compression in all, 4 latent channels).

Papers: Open-Sora (Zheng et al., arXiv:2412.20404, §3 "video compression network"); the temporal
part follows MAGVIT-v2 (Yu et al., arXiv:2310.05737: causal 3-D convolutions) without its codebook.
Official code: hpcaitech/Open-Sora v1.2.0, `opensora/models/vae/vae_temporal.py` (CausalConv3d,
ResBlock, Encoder, Decoder, VAE_Temporal, VAE_Temporal_SD) and `opensora/models/vae/vae.py`
(VideoAutoencoderKL, VideoAutoencoderPipeline, OpenSoraVAE_V1_2). Checkpoint: `hpcai-tech/OpenSora-VAE-v1.2`,
a transformers `PreTrainedModel` folder (config.json + model.safetensors) whose keys are
`temporal_vae.*` (= this file's names), `scale`, `shift`, and `spatial_vae.module.*` (diffusers
`AutoencoderKL` names; `weights_loader.load_opensora_vae` renames them to `minidit.vae`'s ldm names).
393,341,007 parameters: 83,653,863 in the SDXL VAE, 309,687,144 in the temporal VAE (its 512-wide
3x3x3 convolutions cost 7 M each).

    video x (B, 3, F, H, W) in [-1, 1]
    spatial   each frame: z2 = 0.18215 * SDXL-VAE.encode(frame)             (B, 4, F, H/8, W/8)
              (0.18215 is SD 1.x's scale: the official wrapper hard-codes it, not SDXL's 0.13025)
    temporal  per clip of micro_frame_size = 17 frames: zeros in front up to a multiple of 4,
              causal Encoder -> quant_conv -> N(mean, exp(logvar)) -> z     (B, 4, 5, h, w) per clip
    latents   (z - shift) / scale, per channel                                17 / 34 / 51 -> 5 / 10 / 15
    decode    the reverse: z * scale + shift; per 5 latent frames post_quant_conv -> Decoder ->
              20 frames, the first 3 (the padding) dropped; SDXL-VAE.decode(z2 / 0.18215) per frame

Causal: a time kernel k sees frame t and the k - 1 frames BEFORE it (the time axis is padded with
zeros in front only), so frame 0 is encoded on its own -- an image is a 1-frame video. The GroupNorms
do pool over time, so a clip's latents depend on every frame of the clip: splitting a video into
17-frame clips (what the model was trained on) is part of the model, not a memory trick; decoding
34 frames is two independent 17-frame decodes, which differ from one 34-frame pass.

Glossary (paper/official name | code name | checkpoint key)
  causal conv          | CausalConv3d            | temporal_vae.*.conv.weight (Conv3d inside)
  ResBlock             | ResBlock                | ...norm1, conv1, norm2, conv2, conv3 (1x1x1 shortcut)
  time downsample x2   | Encoder.conv_blocks[i]  | temporal_vae.encoder.conv_blocks.{1,2}.conv.* (stride (2,1,1))
  depth-to-time x2     | Decoder.conv_blocks[i]  | temporal_vae.decoder.conv_blocks.{1,2}.conv.* (C -> 2C, then
                       |                         | channel (c, ts) -> frame (t, ts))
  spatial VAE          | spatial_vae.module      | spatial_vae.module.* (diffusers names in the file)
  shift, scale         | shift, scale            | shift, scale (1, 4, 1, 1, 1) buffers

Shape legend: B batch, C channels, F frames (pixels), T latent frames, H W image size, h w = H/8 W/8.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .vae import SDXL_VAE, AutoencoderKL, DiagonalGaussian, VAEConfig, decode_latents, encode_latents

ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU}


@dataclass(frozen=True)
class VAETemporalConfig:
    """The official `VAE_Temporal(...)` keyword arguments; the defaults are `VAE_Temporal_SD`'s
    (the class's own default `temporal_downsample` is (True, True, False); no checkpoint uses it)."""
    in_out_channels: int = 4                              # the 2-D VAE's latent channels
    latent_embed_dim: int = 4
    embed_dim: int = 4
    filters: int = 128
    num_res_blocks: int = 4
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    temporal_downsample: tuple[bool, ...] = (False, True, True)   # one per level but the last: x2 in time
    num_groups: int = 32
    activation_fn: str = "swish"

    def __post_init__(self):
        object.__setattr__(self, "channel_multipliers", tuple(self.channel_multipliers))
        object.__setattr__(self, "temporal_downsample", tuple(bool(d) for d in self.temporal_downsample))
        if len(self.temporal_downsample) != len(self.channel_multipliers) - 1:
            raise ValueError(f"temporal_downsample needs one flag per level but the last "
                             f"({len(self.channel_multipliers) - 1}), got {self.temporal_downsample}")
        if self.activation_fn not in ACTIVATIONS:
            raise ValueError(f"activation_fn must be one of {sorted(ACTIVATIONS)}, got {self.activation_fn!r}")

    @property
    def time_downsample_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


class CausalConv3d(nn.Module):
    """Conv3d that pads the time axis with zeros in FRONT only (kernel - stride frames) and H, W
    symmetrically (kernel // 2): output frame t sees input frames <= t."""

    def __init__(self, chan_in: int, chan_out: int, kernel_size, stride=(1, 1, 1), bias: bool = True):
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"CausalConv3d needs odd spatial kernels, got {kh}x{kw}")
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1 + 1 - stride[0], 0)   # F.pad order: W, H, T
        self.conv = nn.Conv3d(chan_in, chan_out, (kt, kh, kw), stride=stride, bias=bias)

    def forward(self, x):
        return self.conv(F.pad(x, self.padding))                                     # (B, C_out, T', H, W)


class ResBlock(nn.Module):
    """x + conv2(act(norm2(conv1(act(norm1(x)))))), bias-free 3x3x3 causal convs; a 1x1x1 `conv3`
    shortcut when the width changes. GroupNorm with torch's default eps (1e-5), over (C, T, H, W)."""

    def __init__(self, in_channels: int, filters: int, num_groups: int, activation: type[nn.Module]):
        super().__init__()
        self.activate = activation()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, filters, 3, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, filters)
        self.conv2 = CausalConv3d(filters, filters, 3, bias=False)
        self.conv3 = CausalConv3d(in_channels, filters, 1, bias=False) if in_channels != filters else None

    def forward(self, x):
        h = self.conv1(self.activate(self.norm1(x)))
        h = self.conv2(self.activate(self.norm2(h)))
        return h + (x if self.conv3 is None else self.conv3(x))


class Encoder(nn.Module):
    def __init__(self, c: VAETemporalConfig, out_channels: int):
        super().__init__()
        act, widths = ACTIVATIONS[c.activation_fn], [c.filters * m for m in c.channel_multipliers]
        self.activate = act()
        self.conv_in = CausalConv3d(c.in_out_channels, c.filters, 3, bias=False)
        self.block_res_blocks, self.conv_blocks = nn.ModuleList(), nn.ModuleList()
        prev = c.filters
        for i, w in enumerate(widths):
            self.block_res_blocks.append(nn.ModuleList(
                [ResBlock(prev if j == 0 else w, w, c.num_groups, act) for j in range(c.num_res_blocks)]))
            prev = w
            if i < len(widths) - 1:             # no time stride: an Identity (no keys), as the official code
                self.conv_blocks.append(CausalConv3d(w, w, 3, stride=(2, 1, 1)) if c.temporal_downsample[i]
                                        else nn.Identity())
        self.res_blocks = nn.ModuleList([ResBlock(prev, prev, c.num_groups, act) for _ in range(c.num_res_blocks)])
        self.norm1 = nn.GroupNorm(c.num_groups, prev)
        self.conv2 = CausalConv3d(prev, out_channels, 1)

    def forward(self, x):
        x = self.conv_in(x)                                                          # (B, filters, T, h, w)
        for i, blocks in enumerate(self.block_res_blocks):
            for block in blocks:
                x = block(x)
            if i < len(self.conv_blocks):
                x = self.conv_blocks[i](x)                                           # T / 2 where strided
        for block in self.res_blocks:
            x = block(x)
        return self.conv2(self.activate(self.norm1(x)))                              # (B, 2 z, T / 4, h, w)


class Decoder(nn.Module):
    def __init__(self, c: VAETemporalConfig):
        super().__init__()
        act, widths = ACTIVATIONS[c.activation_fn], [c.filters * m for m in c.channel_multipliers]
        self.activate, self.temporal_downsample = act(), c.temporal_downsample
        prev = widths[-1]
        self.conv1 = CausalConv3d(c.latent_embed_dim, prev, 3)
        self.res_blocks = nn.ModuleList([ResBlock(prev, prev, c.num_groups, act) for _ in range(c.num_res_blocks)])
        # Built deepest level first, stored in level order (index i = the encoder's level i).
        blocks, ups = [], []
        for i in reversed(range(len(widths))):
            blocks.insert(0, nn.ModuleList([ResBlock(prev if j == 0 else widths[i], widths[i], c.num_groups, act)
                                            for j in range(c.num_res_blocks)]))
            prev = widths[i]
            if i > 0:                           # conv_blocks[i - 1] undoes the encoder's conv_blocks[i - 1]
                ups.insert(0, CausalConv3d(prev, 2 * prev, 3) if c.temporal_downsample[i - 1] else nn.Identity())
        self.block_res_blocks, self.conv_blocks = nn.ModuleList(blocks), nn.ModuleList(ups)
        self.norm1 = nn.GroupNorm(c.num_groups, prev)
        self.conv_out = CausalConv3d(prev, c.in_out_channels, 3)

    def forward(self, z):
        x = self.conv1(z)                                                            # (B, C, T, h, w)
        for block in self.res_blocks:
            x = block(x)
        for i in reversed(range(len(self.block_res_blocks))):
            for block in self.block_res_blocks[i]:
                x = block(x)
            if i > 0 and self.temporal_downsample[i - 1]:
                x = self.conv_blocks[i - 1](x)                                       # (B, 2C, T, h, w)
                B, C2, T, h, w = x.shape        # depth-to-time: channel index c * 2 + s -> frame t * 2 + s
                x = x.reshape(B, C2 // 2, 2, T, h, w).permute(0, 1, 3, 2, 4, 5).reshape(B, C2 // 2, 2 * T, h, w)
        return self.conv_out(self.activate(self.norm1(x)))                           # (B, C_in, 4 T, h, w)


class VAE_Temporal(nn.Module):
    """The causal temporal VAE on 2-D-VAE latents: encode (B, 4, F, h, w) -> posterior over
    (B, 4, ceil(F / 4), h, w); decode(z, num_frames) -> (B, 4, num_frames, h, w)."""

    def __init__(self, config: VAETemporalConfig = VAETemporalConfig()):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c, 2 * c.latent_embed_dim)
        self.quant_conv = CausalConv3d(2 * c.latent_embed_dim, 2 * c.embed_dim, 1)
        self.post_quant_conv = CausalConv3d(c.embed_dim, c.latent_embed_dim, 1)
        self.decoder = Decoder(c)

    def time_padding(self, num_frames: int) -> int:
        """Frames of zeros put in front so the count is a multiple of the time factor (4)."""
        f = self.config.time_downsample_factor
        return (f - num_frames % f) % f

    def latent_frames(self, num_frames: int) -> int:
        return (num_frames + self.time_padding(num_frames)) // self.config.time_downsample_factor

    def encode(self, x) -> DiagonalGaussian:
        x = F.pad(x, (0, 0, 0, 0, self.time_padding(x.shape[2]), 0))                 # zeros in front
        return DiagonalGaussian(self.quant_conv(self.encoder(x)).to(x.dtype))        # over (B, z, T, h, w)

    def decode(self, z, num_frames: int):
        if self.latent_frames(num_frames) != z.shape[2]:
            raise InputError(f"{z.shape[2]} latent frames cannot decode to {num_frames} frames (they encode "
                             f"{self.latent_frames(num_frames)}); pass the clip's frame count as num_frames")
        x = self.decoder(self.post_quant_conv(z))                                    # (B, C, 4 T, h, w)
        return x[:, :, self.time_padding(num_frames):]                               # (B, C, F, h, w)


# --------------------------------------------------------------------------------------------
# The composite: per-frame 2-D VAE + temporal VAE + per-channel normalisation
# --------------------------------------------------------------------------------------------

# The official `VideoAutoencoderKL` multiplies by SD 1.x's 0.18215 whatever the 2-D VAE (here SDXL's).
OPENSORA_SPATIAL_VAE = replace(SDXL_VAE, scaling_factor=0.18215)


@dataclass(frozen=True)
class VideoAutoencoderPipelineConfig:
    """The official `VideoAutoencoderPipelineConfig` / `OpenSoraVAE_V1_2(...)` arguments that shape
    the model (`vae_2d` / `vae_temporal` are configs here, not registry dicts; `micro_batch_size`
    sits inside the official `vae_2d` dict). Training-only ones (`cal_loss`, `freeze_vae_2d`) are left out."""
    vae_2d: VAEConfig = OPENSORA_SPATIAL_VAE
    vae_temporal: VAETemporalConfig = VAETemporalConfig()
    micro_frame_size: int | None = 17      # frames per temporal clip (None: the whole video at once)
    micro_batch_size: int | None = 4       # frames per 2-D VAE call (memory only: same result)
    shift: tuple[float, ...] = (-0.10, 0.34, 0.27, 0.98)
    scale: tuple[float, ...] = (3.85, 2.32, 2.33, 3.06)

    def __post_init__(self):
        object.__setattr__(self, "shift", tuple(float(s) for s in self.shift))
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))


class VideoAutoencoderKL(nn.Module):
    """A 2-D AutoencoderKL applied frame by frame (`module`), `micro_batch_size` frames per call."""

    def __init__(self, config: VAEConfig, micro_batch_size: int | None):
        super().__init__()
        self.module = AutoencoderKL(config)
        self.micro_batch_size = micro_batch_size

    def _per_frames(self, fn, x):
        B = x.shape[0]
        frames = x.permute(0, 2, 1, 3, 4).flatten(0, 1)                             # (B F, C, H, W)
        n = self.micro_batch_size or frames.shape[0]
        out = torch.cat([fn(frames[i:i + n]) for i in range(0, frames.shape[0], n)])
        return out.unflatten(0, (B, -1)).permute(0, 2, 1, 3, 4)                      # (B, C', F, H', W')

    def encode(self, x, sample: bool = True, generator=None):
        one = lambda frames: encode_latents(self.module, frames, sample=sample, generator=generator)  # noqa: E731
        return self._per_frames(one, x)                                              # (B, 4, F, h, w)

    def decode(self, z):
        return self._per_frames(lambda frames: decode_latents(self.module, frames), z)   # (B, 3, F, H, W)


class VideoAutoencoderPipeline(nn.Module):
    """Open-Sora 1.2's video VAE (`OpenSoraVAE_V1_2`): encode(video) -> latents, decode(latents, num_frames)."""

    def __init__(self, config: VideoAutoencoderPipelineConfig = VideoAutoencoderPipelineConfig()):
        super().__init__()
        self.config = c = config
        if len(c.shift) != len(c.scale):
            raise ValueError(f"shift and scale need one value per latent channel, got {c.shift} and {c.scale}")
        self.spatial_vae = VideoAutoencoderKL(c.vae_2d, c.micro_batch_size)
        self.temporal_vae = VAE_Temporal(c.vae_temporal)
        self.register_buffer("scale", torch.tensor(c.scale)[None, :, None, None, None])   # (1, z, 1, 1, 1)
        self.register_buffer("shift", torch.tensor(c.shift)[None, :, None, None, None])

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a `num_frames` video: 17 -> 5 per full clip, ceil(rest / 4) for the rest."""
        m, lat = self.config.micro_frame_size, self.temporal_vae.latent_frames
        if m is None:
            return lat(num_frames)
        return num_frames // m * lat(m) + (lat(num_frames % m) if num_frames % m else 0)

    def encode(self, x, *, sample: bool = True, generator=None):
        """(B, 3, F, H, W) in [-1, 1] -> (B, 4, T, H/8, W/8). `sample=True` draws from both posteriors,
        as the official encode always does; `sample=False` takes their means."""
        if x.ndim != 5:
            raise InputError(f"a video is (B, 3, F, H, W), got shape {tuple(x.shape)}")
        x_z = self.spatial_vae.encode(x.to(self.scale.dtype), sample, generator)    # (B, 4, F, h, w)
        m = self.config.micro_frame_size or x_z.shape[2]
        z = []
        for i in range(0, x_z.shape[2], m):
            posterior = self.temporal_vae.encode(x_z[:, :, i:i + m])
            z.append(posterior.sample(generator) if sample else posterior.mode())
        return (torch.cat(z, dim=2) - self.shift) / self.scale                       # (B, 4, T, h, w)

    def decode(self, z, *, num_frames: int):
        """(B, 4, T, h, w) -> (B, 3, num_frames, 8h, 8w) in about [-1, 1]. `num_frames` is needed:
        a clip's padding (which frames to drop) is not stored in the latents."""
        if z.ndim != 5 or self.latent_frames(num_frames) != z.shape[2]:
            raise InputError(f"latents of shape {tuple(z.shape)} do not decode to {num_frames} frames: those "
                             f"have {self.latent_frames(num_frames)} latent frames (B, 4, T, h, w)")
        z = z.to(self.scale.dtype) * self.scale + self.shift                         # in the VAE's dtype
        m = self.config.micro_frame_size or num_frames
        mz, clips, left = self.temporal_vae.latent_frames(m), [], num_frames
        for i in range(0, z.shape[2], mz):
            clips.append(self.temporal_vae.decode(z[:, :, i:i + mz], num_frames=min(m, left)))
            left -= m
        return self.spatial_vae.decode(torch.cat(clips, dim=2))                     # (B, 3, F, H, W)


VAE_TEMPORAL_SD = VAETemporalConfig()
OPENSORA_VAE_V1_2 = VideoAutoencoderPipelineConfig()
PRESETS = {"OpenSoraVAE_V1_2": OPENSORA_VAE_V1_2}
