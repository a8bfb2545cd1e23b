"""Rectified-flow maths: the straight path, its velocity, where to train on it, and the shifts.

Papers: Flow Matching (Lipman et al., arXiv:2210.02747), Rectified Flow (Liu et al.,
arXiv:2209.03003); Stable Diffusion 3 (Esser et al., arXiv:2403.03206: §3.1 the training densities,
§5.3.2 the resolution-dependent shift). Code that uses it: `minidit/grid.py` (the flow grids),
`minidit/samplers.py` (Euler, DPM-Solver++), `scripts/train_toy_flow.py`, the SD3 and video models.

    path        x_sigma = (1 - sigma) x_0 + sigma eps,        sigma in [0, 1]  (0 = data, 1 = noise)
    velocity    v = d x_sigma / d sigma = eps - x_0           what the network predicts
    x_0 back    x_0 = x_sigma - sigma v                        (`diffusion.predict_x0`, "flow")
    loss        || v_theta(x_sigma, sigma) - (eps - x_0) ||^2
    shift       sigma' = s sigma / (1 + (s - 1) sigma)         s > 1 spends more steps at high noise

Where to train (the density of sigma during training, SD3 §3.1):

    uniform        sigma ~ U(0, 1)                              (rectified flow as first published)
    logit_normal   sigma = sigmoid(m + s n),  n ~ N(0, 1)       SD3's choice (m = 0, s = 1): the middle
    mode           sigma = f_mode(u; s) = 1 - u - s (cos^2(pi u / 2) - 1 + u),  u ~ U(0, 1)
                   (paper eq. 20: s > 0 favours the middle but, unlike logit-normal, keeps
                   density at both ends; s = 0 is uniform; monotone for -1 <= s <= 2 / (pi - 2))

Where to sample (the grid's shift; the same maths, applied at sampling time):

    SD3's shift         s = sqrt(m / n) for an image with m / n times the pixels the shift-free
                        schedule was made for (`resolution_shift`); SD3.5's official configs use s = 3
    Open-Sora 1.2       s = sqrt(H W / 512^2) * sqrt(T'), T' = num_frames // 17 * 5 latent frames
                        (1 for an image): its `use_timestep_transform` (`opensora_shift`)
    dynamic shifting    diffusers' `use_dynamic_shifting` (Flux and others; `DynamicShift`):
                        mu = linear in the image's token count, from base_shift at
                        base_image_seq_len to max_shift at max_image_seq_len, then
                        "exponential": sigma' = e^mu / (e^mu + (1/sigma - 1))  = SD3's shift with s = e^mu
                        "linear":      sigma' = mu / (mu + (1/sigma - 1))      = SD3's shift with s = mu

The same path is a diffusion with alpha = 1 - sigma (not variance preserving: alpha^2 + sigma^2 < 1
in between), which is how `samplers.Grid` stores it, so DPM-Solver++ runs on it unchanged.

The model is fed `timestep = sigma * num_train_timesteps` (1000), as SD3's official code and
diffusers' `FlowMatchEulerDiscreteScheduler` do. Open-Sora 1.2 feeds the same t * 1000 but its network
predicts the opposite velocity, x_0 - eps (its Euler step is z + v dt with dt > 0): negate its output
to use it as a "flow" model here.

Shape legend: B batch, any further dims are the sample's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError


def _per_sample(sigma, x):
    """sigma as a tensor that broadcasts against x: a scalar, or (B,) -> (B, 1, 1, ...)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))) if sigma.ndim == 1 else sigma


def flow_interpolate(x0, noise, sigma):
    """x_sigma = (1 - sigma) x_0 + sigma eps; sigma a number or one value per sample (B,)."""
    s = _per_sample(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0, noise):
    """The velocity of the straight path, d x_sigma / d sigma = eps - x_0 (independent of sigma)."""
    return noise - x0


def flow_loss(model_fn, x0, sigma, noise, num_train_timesteps: int = 1000):
    """Per-sample flow-matching loss mean((v_theta - (eps - x_0))^2), shape (B,).

    `model_fn(x_sigma, timestep)` gets timestep = sigma * num_train_timesteps, as SD3 is trained."""
    x_sigma = flow_interpolate(x0, noise, sigma)
    timestep = torch.as_tensor(sigma, dtype=torch.float32, device=x0.device) * num_train_timesteps
    err = (model_fn(x_sigma, timestep) - velocity_target(x0, noise)) ** 2
    return err.mean(dim=list(range(1, err.ndim)))


def shift_sigmas(sigma, shift: float):
    """SD3's shift (paper eq. 23, `time_snr_shift` in the official code): sigma' = s sigma / (1 + (s-1) sigma).

    It keeps 0 and 1 fixed and, for s > 1, moves every other point towards noise: the signal-to-noise
    ratio of a resolution with s^2 times more pixels at the same sigma. shift = 1 is the identity."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


# --------------------------------------------------------------------------------------------
# Where to train: the density of sigma (SD3 §3.1)
# --------------------------------------------------------------------------------------------

TRAINING_DENSITIES = ("uniform", "logit_normal", "mode")
MODE_SCALE_MAX = 2 / (math.pi - 2)           # f_mode is monotone (a valid map) for -1 <= s <= this


def mode_map(u, scale: float):
    """SD3's f_mode(u; s) = 1 - u - s (cos^2(pi u / 2) - 1 + u) (paper eq. 20): u ~ U(0, 1) -> sigma.

    f(0) = 1 and f(1) = 0 for every s; s = 0 is 1 - u (uniform). Its slope is
    -1 + s (pi/2 sin(pi u) - 1), which stays <= 0 only for -1 <= s <= 2 / (pi - 2) ~ 1.75."""
    if not -1.0 <= scale <= MODE_SCALE_MAX:
        raise ValueError(f"mode scale must lie in [-1, 2/(pi-2) = {MODE_SCALE_MAX:.4f}] (else f_mode is not "
                         f"monotone and leaves [0, 1]), got {scale}")
    return 1 - u - scale * (torch.cos(math.pi / 2 * u) ** 2 - 1 + u)


def logit_normal_density(sigma, loc: float = 0.0, scale: float = 1.0):
    """The density of sigma = sigmoid(loc + scale n), n ~ N(0, 1), on (0, 1):
    exp(-(logit(sigma) - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi) sigma (1 - sigma))."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    z = (torch.logit(sigma) - loc) / scale
    return torch.exp(-0.5 * z**2) / (scale * math.sqrt(2 * math.pi) * sigma * (1 - sigma))


def training_sigmas(batch: int, density: str = "logit_normal", *, loc: float = 0.0, scale: float = 1.0,
                    mode_scale: float = 1.29, generator=None, device=None) -> torch.Tensor:
    """Draw the noise level sigma of each training example, (B,) float32 in [0, 1].

    density: "uniform" | "logit_normal" (sigmoid(loc + scale n), SD3's default m = 0, s = 1) |
    "mode" (f_mode(u; mode_scale); 1.29 is the default of diffusers' SD3 training scripts).
    One draw of `batch` numbers from `generator` (or the global RNG), as diffusers'
    `compute_density_for_timestep_sampling` draws them."""
    if density not in TRAINING_DENSITIES:
        raise ValueError(f"unknown training density {density!r}: one of {', '.join(TRAINING_DENSITIES)}")
    if density == "logit_normal":
        if scale <= 0:
            raise ValueError(f"the logit-normal scale must be positive, got {scale}")
        return torch.sigmoid(loc + scale * torch.randn(batch, generator=generator, device=device))
    u = torch.rand(batch, generator=generator, device=device)
    return u if density == "uniform" else mode_map(u, mode_scale)


# --------------------------------------------------------------------------------------------
# Where to sample: the resolution-dependent shift (SD3 §5.3.2) and diffusers' dynamic shifting
# --------------------------------------------------------------------------------------------

def resolution_shift(num_pixels: int, base_pixels: int) -> float:
    """SD3's shift for an image with m = num_pixels instead of n = base_pixels: sqrt(m / n).

    The paper's argument: if all n pixels hold one value c, x = (1 - sigma) c + sigma eps estimates c
    with standard error (sigma / (1 - sigma)) / sqrt(n). With m pixels the same certainty comes at
    sigma' / (1 - sigma') = sqrt(m / n) sigma / (1 - sigma): `shift_sigmas(sigma, sqrt(m / n))`.
    (1024^2 vs 256^2: 4; the official SD3.5 configs use 3.)"""
    if num_pixels <= 0 or base_pixels <= 0:
        raise ValueError(f"pixel counts must be positive, got {num_pixels} and {base_pixels}")
    return math.sqrt(num_pixels / base_pixels)


# Open-Sora 1.2 (hpcaitech/Open-Sora v1.2.0, `opensora/schedulers/rf/rectified_flow.py timestep_transform`)
OPENSORA_BASE_PIXELS = 512 * 512          # base_resolution: the shift is 1 for a 512 x 512 image
OPENSORA_CLIP = (17, 5)                   # 17 frames -> 5 latent frames (hard-coded there: the VAE's rate)


def opensora_shift(height: int, width: int, num_frames: int, scale: float = 1.0) -> float:
    """Open-Sora 1.2's `timestep_transform` as a shift: t' = s t / (1 + (s - 1) t) = `shift_sigmas(t, s)`,

        s = sqrt(height * width / 512^2) * sqrt(T') * scale,   T' = num_frames // 17 * 5  (1 if num_frames == 1)

    with height, width, num_frames the PIXEL video's (the model_kwargs of the official sampler) and
    `scale` its `transform_scale` (1 at inference). Examples: 512^2, 17 frames -> sqrt(5); 240 x 426
    (240p 9:16), 51 frames -> 0.6245 * sqrt(15) = 2.419; a 1024^2 image -> 2.

    The official code evaluates this in the run's dtype (bfloat16 by default: height * width and the
    square roots round to 8 bits, ~0.4 %); here it is exact (float64)."""
    if min(height, width) <= 0 or num_frames < 1:
        raise InputError(f"height, width and num_frames must be positive, got {height}, {width}, {num_frames}")
    frames_in, latents_out = OPENSORA_CLIP
    latent_frames = 1 if num_frames == 1 else num_frames // frames_in * latents_out
    if latent_frames == 0:
        raise InputError(f"Open-Sora's timestep transform is undefined for {num_frames} frames: it counts "
                         f"num_frames // {frames_in} * {latents_out} = 0 latent frames, a shift of 0 that maps "
                         f"every t to 0 (no denoising at all). Use 1 frame (an image) or at least {frames_in} "
                         "(51 = its \"2s\", 102 = \"4s\")")
    return math.sqrt(height * width / OPENSORA_BASE_PIXELS) * math.sqrt(latent_frames) * scale


TIME_SHIFT_TYPES = ("exponential", "linear")


def time_shift(mu: float, sigma, time_shift_type: str = "exponential"):
    """diffusers' dynamic time shift (`FlowMatchEulerDiscreteScheduler.time_shift`, exponent 1):

        "exponential"   e^mu / (e^mu + (1/sigma - 1))     = shift_sigmas(sigma, e^mu)
        "linear"        mu / (mu + (1/sigma - 1))         = shift_sigmas(sigma, mu)
    """
    if time_shift_type == "exponential":
        return shift_sigmas(sigma, math.exp(mu))
    if time_shift_type == "linear":
        if mu <= 0:
            raise ValueError(f"the linear time shift needs mu > 0, got {mu}")
        return shift_sigmas(sigma, mu)
    raise ValueError(f"unknown time_shift_type {time_shift_type!r}: one of {', '.join(TIME_SHIFT_TYPES)}")


@dataclass(frozen=True)
class DynamicShift:
    """diffusers' `use_dynamic_shifting`: the shift is chosen per image from its token count
    (`mu`, the pipelines' `calculate_shift`), then applied by `time_shift`. The defaults are
    `FlowMatchEulerDiscreteScheduler`'s."""
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    time_shift_type: str = "exponential"

    def __post_init__(self):
        numbers = {"base_shift": self.base_shift, "max_shift": self.max_shift,
                   "base_image_seq_len": self.base_image_seq_len, "max_image_seq_len": self.max_image_seq_len}
        missing = [k for k, v in numbers.items() if not isinstance(v, (int, float))]
        if missing:
            raise ValueError(f"dynamic shifting needs numbers for {', '.join(missing)} (got {numbers})")
        if self.time_shift_type not in TIME_SHIFT_TYPES:
            raise ValueError(f"unknown time_shift_type {self.time_shift_type!r}: one of {', '.join(TIME_SHIFT_TYPES)}")
        if self.max_image_seq_len == self.base_image_seq_len:
            raise ValueError("base_image_seq_len and max_image_seq_len must differ (mu is a line through them)")

    def mu(self, image_seq_len: int) -> float:
        """mu on the line through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift);
        image_seq_len = (H / patch) (W / patch), the image's tokens (latent H W). Not clamped: a longer
        sequence extrapolates, as in diffusers."""
        if image_seq_len < 1:
            raise ValueError(f"image_seq_len (the image's token count) must be positive, got {image_seq_len}")
        slope = (self.max_shift - self.base_shift) / (self.max_image_seq_len - self.base_image_seq_len)
        return self.base_shift + slope * (image_seq_len - self.base_image_seq_len)
