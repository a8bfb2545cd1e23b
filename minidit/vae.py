"""AutoencoderKL: the latent-diffusion VAE that every DiT-family model denoises in.

Paper: Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models",
arXiv:2112.10752 (§3, App. G). Official code: CompVis/latent-diffusion and Stability-AI/generative-models
`ldm/modules/diffusionmodules/model.py` (Encoder, Decoder, ResnetBlock, AttnBlock) and
`ldm/modules/distributions/distributions.py` (DiagonalGaussianDistribution). Attribute names are the
ldm checkpoint keys (`encoder.down.0.block.1.conv2.weight`, `decoder.up.3.upsample.conv.weight`, ...),
so `vae-ft-mse-840000-ema-pruned.ckpt`, the `first_stage_model.*` part of SD/SDXL single files and the
VAE inside `sd3_medium.safetensors` load strictly; diffusers folders are renamed by `weights_loader.vae`.

    image x (B, 3, H, W) in [-1, 1]
      Encoder: conv_in -> [ResnetBlock x num_res_blocks, Downsample] per level -> mid (Resnet, Attn,
               Resnet) -> GroupNorm, SiLU, conv_out -> 2z channels -> quant_conv (SD1/SDXL only)
      posterior q(z|x) = N(mean, exp(logvar)), logvar clamped to [-30, 20]
      Decoder: post_quant_conv (SD1/SDXL) -> conv_in -> mid -> [ResnetBlock x (num_res_blocks+1),
               Upsample] per level, deepest first -> GroupNorm, SiLU, conv_out -> (B, 3, H, W)
    latents the diffusion model sees:  z_diffusion = (z - shift_factor) * scaling_factor
    (`encode_latents` / `decode_latents`: the ONE place this scaling lives).

Glossary (paper symbol | code name | checkpoint key)
  f (downsampling factor) | 2 ** (len(ch_mult) - 1) = 8 | number of `encoder.down.{i}.downsample`
  c (latent channels)     | z_channels                   | decoder.conv_in.weight.shape[1]
  base width              | ch                           | encoder.conv_in.weight.shape[0]
  E, D                    | encoder, decoder             | encoder.*, decoder.*
  1/sigma_z               | scaling_factor               | (not stored: config / preset)

Precision. The VAEs were trained in fp32 (some files, e.g. SD3's, store fp16 copies; `load_vae` casts
to float32 by default). In float16 the SDXL VAE's decoder overflows (some of its
internal activations exceed fp16's maximum, 65504, and become inf -> NaN -> a black image); the
`sdxl-vae-fp16-fix` weights are fine-tuned to keep activations small and decode in fp16. bfloat16 has
fp32's exponent range, so it does not overflow, at ~3 significant digits. minidit therefore loads VAEs in
float32 by default (bfloat16 is safe too), records the known overflow as `force_upcast` (diffusers'
flag), and `decode_latents` raises a clear error on any NaN/inf instead of returning a black image.

Shape legend: B batch, C channels, H W image size, h w = H/8 W/8 latent size, z latent channels,
N = h*w attention tokens of the mid block (one head of width C).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .errors import NonFiniteError
from .tiling import tiled_apply


@dataclass(frozen=True)
class VAEConfig:
    # ldm `ddconfig` names (the official constructor's arguments) ...
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128                                # width of the first level
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)      # level widths = ch * ch_mult -> 128, 256, 512, 512
    num_res_blocks: int = 2                      # ResNet blocks per encoder level (decoder: one more)
    z_channels: int = 4                          # latent channels (= ldm embed_dim in every released VAE)
    # ... and diffusers `AutoencoderKL` names for what ldm keeps outside ddconfig.
    norm_num_groups: int = 32                    # GroupNorm groups (32 in every released VAE)
    use_quant_conv: bool = True                  # 1x1 conv on the moments (SD1/SDXL yes, SD3 no)
    use_post_quant_conv: bool = True             # 1x1 conv before the decoder
    scaling_factor: float = 0.18215              # latents are scaled to ~unit variance by this
    shift_factor: float = 0.0                    # ... after subtracting this (SD3)
    force_upcast: bool = True                    # True: decode in fp32/bf16, fp16 may overflow

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def Normalize(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))); a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 32):
        super().__init__()
        self.norm1 = Normalize(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x):
        # Without autograd, SiLU overwrites the fresh norm output and the residual is added into the fresh
        # conv output: the same numbers, one full-size activation fewer at a time (at 1024² an SDXL-VAE
        # activation of the last levels is 0.5-1 GiB in float32). With autograd, SiLU must keep its input.
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))                # (B, C_out, H, W)
        h = self.conv2(F.silu(self.norm2(h), inplace=inplace))   # (ldm has dropout here; 0 for every released VAE)
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(shortcut) if inplace else shortcut + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding ONE pixel on the right and bottom only (ldm's asymmetric pad)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))                             # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1 convs for q, k, v and the output."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm = Normalize(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        # In token layout (B, N, C), made contiguous once, a 1x1 conv is a Linear over the channels.
        # This matters: q/k/v taken from the conv layout are strided along C, and SDPA's fused CPU
        # kernel then falls back to the math path, which materialises the N x N score matrix
        # (16 GiB at N = 65536, a 2048² decode) instead of working in O(N) memory.
        tokens = self.norm(x).flatten(2).transpose(1, 2).contiguous()               # (B, N, C)
        q, k, v = (F.linear(tokens, conv.weight.view(C, C), conv.bias)[:, None]      # (B, 1, N, C)
                   for conv in (self.q, self.k, self.v))
        h = attention(q, k, v)[:, 0]                # (B, N, C); scale 1/sqrt(C), as ldm's c**-0.5
        h = F.linear(h, self.proj_out.weight.view(C, C), self.proj_out.bias)         # (B, N, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)                             # (B, C, H, W)


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: `block` (ResNet blocks) and a `downsample` or `upsample` (or neither).

    (ldm also has an empty `attn` list here: no released VAE puts attention inside the levels.)
    """

    def __init__(self, blocks: list[ResnetBlock], downsample=None, upsample=None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.downsample = downsample
        self.upsample = upsample


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        c, g = config, config.norm_num_groups
        widths = [c.ch * m for m in c.ch_mult]
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.down = nn.ModuleList()
        w_in = c.ch
        for i, w in enumerate(widths):
            blocks = [ResnetBlock(w_in if j == 0 else w, w, g) for j in range(c.num_res_blocks)]
            last = i == len(widths) - 1
            self.down.append(Level(blocks, downsample=None if last else Downsample(w)))
            w_in = w
        self.mid = MidBlock(w_in, g)
        self.norm_out = Normalize(w_in, g)
        self.conv_out = nn.Conv2d(w_in, 2 * c.z_channels, 3, padding=1)      # mean and logvar

    def forward(self, x):
        h = self.conv_in(x)                                                   # (B, ch, H, W)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if level.downsample is not None:
                h = level.downsample(h)                                       # halves H, W
        h = self.mid(h)                                                       # (B, C, h, w)
        return self.conv_out(F.silu(self.norm_out(h)))                        # (B, 2z, h, w)


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        c, g = config, config.norm_num_groups
        widths = [c.ch * m for m in c.ch_mult]
        w_in = widths[-1]
        self.conv_in = nn.Conv2d(c.z_channels, w_in, 3, padding=1)
        self.mid = MidBlock(w_in, g)
        # `up[i]` works at the resolution of `encoder.down[i]`; it is built deepest first but stored
        # in resolution order, as ldm does (`self.up.insert(0, up)`), so the keys match.
        levels = []
        for i in reversed(range(len(widths))):
            w = widths[i]
            blocks = [ResnetBlock(w_in if j == 0 else w, w, g) for j in range(c.num_res_blocks + 1)]
            levels.insert(0, Level(blocks, upsample=Upsample(w) if i > 0 else None))
            w_in = w
        self.up = nn.ModuleList(levels)
        self.norm_out = Normalize(w_in, g)
        self.conv_out = nn.Conv2d(w_in, c.out_ch, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))                                         # (B, C, h, w)
        for level in reversed(self.up):                                       # deepest level first
            for block in level.block:
                h = block(h)
            if level.upsample is not None:
                h = level.upsample(h)                                         # doubles H, W
        return self.conv_out(F.silu(self.norm_out(h), inplace=not torch.is_grad_enabled()))  # (B, out_ch, H, W)


class DiagonalGaussian:
    """The posterior q(z | x) = N(mean, diag(exp(logvar))) from the encoder's 2z output channels."""

    def __init__(self, moments):
        self.mean, logvar = moments.chunk(2, dim=1)                           # (B, z, h, w) each
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None):
        """mean + std * eps; eps drawn like diffusers' `randn_tensor` (on the generator's device)."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self):
        return self.mean

    def kl(self):
        """KL(q || N(0, I)) summed over (z, h, w): the VAE's regulariser (weight ~1e-6 in ldm)."""
        return 0.5 * torch.sum(self.mean**2 + self.std**2 - 1.0 - self.logvar, dim=[1, 2, 3])


class AutoencoderKL(nn.Module):
    """encode(x) -> DiagonalGaussian over z; decode(z) -> x. Latent scaling is NOT applied here (see
    `encode_latents` / `decode_latents`)."""

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        z = config.z_channels
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(z, z, 1) if config.use_post_quant_conv else None

    def encode_moments(self, x):
        """(B, in, H, W) -> (B, 2z, h, w): the posterior's [mean | logvar] before clamping."""
        moments = self.encoder(x)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def encode(self, x, *, tile: int | None = None, overlap: int = 0) -> DiagonalGaussian:
        """The posterior q(z | x). With `tile` (image pixels) the encoder runs on overlapping tiles."""
        if tile is None:
            return DiagonalGaussian(self.encode_moments(x))
        f = self.config.downsample_factor
        if tile % f or overlap % f or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"tiled encoding needs the image size, tile and overlap to be multiples of {f}; "
                             f"got image {tuple(x.shape[-2:])}, tile {tile}, overlap {overlap}")
        return DiagonalGaussian(tiled_apply(self.encode_moments, x, tile, overlap, scale=1 / f))

    def decode(self, z, *, tile: int | None = None, overlap: int = 0):
        """(B, z, h, w) -> (B, out_ch, f*h, f*w). With `tile` (latent pixels) the decoder runs on
        overlapping tiles, blended linearly, so peak memory depends on the tile, not the image."""
        if tile is None:
            return self._decode(z)
        return tiled_apply(self._decode, z, tile, overlap, scale=self.config.downsample_factor)

    def _decode(self, z):
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def forward(self, x, sample_posterior: bool = False, generator=None):
        """Reconstruction and posterior: (x_hat, q(z|x))."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior


# --------------------------------------------------------------------------------------------
# Latent <-> image: the one place scaling_factor and shift_factor are applied
# --------------------------------------------------------------------------------------------

def encode_latents(vae: AutoencoderKL, image, *, sample: bool = False, generator=None,
                   tile: int | None = None, overlap: int = 0):
    """Image in [-1, 1] -> diffusion latents (z - shift_factor) * scaling_factor.

    `sample=False` takes the posterior mean (what inference code does); `sample=True` draws
    z ~ q(z|x) (what training scripts do).
    """
    posterior = vae.encode(image, tile=tile, overlap=overlap)
    z = posterior.sample(generator) if sample else posterior.mode()
    return (z - vae.config.shift_factor) * vae.config.scaling_factor


def decode_latents(vae: AutoencoderKL, latents, *, tile: int | None = None, overlap: int = 0):
    """Diffusion latents -> image in about [-1, 1]: decode(latents / scaling_factor + shift_factor).

    Raises `minidit.errors.NonFiniteError` (a FloatingPointError) when the decode produced NaN or inf
    (instead of a black image).
    """
    z = latents / vae.config.scaling_factor + vae.config.shift_factor
    image = vae.decode(z.to(next(vae.parameters()).dtype), tile=tile, overlap=overlap)
    check_finite(image, vae)
    return image


def check_finite(image, vae: AutoencoderKL | None = None) -> None:
    """Raise a clear error if a decoded image contains NaN or inf."""
    if torch.isfinite(image).all():
        return
    bad = (~torch.isfinite(image)).float().mean().item()
    dtype = image.dtype if vae is None else next(vae.parameters()).dtype
    hint = ("The SDXL VAE overflows in float16: load it in float32 or bfloat16 (weights_loader.load_vae"
            "(..., dtype=torch.float32)), or use madebyollin/sdxl-vae-fp16-fix for float16."
            if dtype == torch.float16 else
            "Check the latents (NaN/inf in the sampler?) and the VAE weights.")
    raise NonFiniteError(f"the VAE decode produced NaN/inf in {bad:.1%} of the pixels ({dtype}). {hint}")


def to_pil(image):
    """(B, 3 or 1, H, W) in [-1, 1] -> list of PIL images: clamp((x + 1) / 2, 0, 1), * 255, rounded."""
    from PIL import Image
    pixels = ((image.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()                   # (B, H, W, C)
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


# --------------------------------------------------------------------------------------------
# Presets (facts: docs/checkpoints.md#which-vae-each-model-uses)
# --------------------------------------------------------------------------------------------
SD_VAE = VAEConfig()                                        # stabilityai/sd-vae-ft-mse, -ema, SD 1.x/2.x
SDXL_VAE = replace(SD_VAE, scaling_factor=0.13025)          # stabilityai/sdxl-vae (PixArt-Σ)
SDXL_VAE_FP16_FIX = replace(SDXL_VAE, force_upcast=False)   # madebyollin/sdxl-vae-fp16-fix (Hunyuan-DiT)
SD3_VAE = replace(SD_VAE, z_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                  scaling_factor=1.5305, shift_factor=0.0609)  # SD3 / SD3.5, inside the model file

PRESETS = {
    "sd-vae-ft-mse": SD_VAE, "sd-vae-ft-ema": SD_VAE,
    "sdxl-vae": SDXL_VAE, "sdxl-vae-fp16-fix": SDXL_VAE_FP16_FIX,
    "sd3-vae": SD3_VAE,
}
