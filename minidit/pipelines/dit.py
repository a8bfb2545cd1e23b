"""DiT, class label -> image: noise -> DiT-XL/2 denoising in latent space -> VAE decode -> PIL.

By default this is the official sampler (facebookresearch/DiT `sample.py`): 250 DDPM steps respaced
with IDDPM's `space_timesteps`, learned-range variances, classifier-free guidance 4.0 on the first
3 latent channels (`forward_with_cfg`), null class = num_classes (1000), the official timestep
embedding (`timestep_freq_shift=0`) and `decode(latents / 0.18215)`. With the global RNG seeded as
`sample.py` does (`torch.manual_seed(seed)`, generator=None) the random stream is the official one.

`DiTPipeline.from_pretrained(folder, follow="diffusers")` instead reproduces diffusers' DiTPipeline
on the same folder: the folder's scheduler (a DDIMScheduler with "leading" timesteps from the current
converter, or the DDPMScheduler of early converted folders, whose step noise diffusers draws from the
global RNG), guidance on all latent channels, the learned-sigma half dropped before the step, and
diffusers' timestep embedding (`timestep_freq_shift=1`: docs/checkpoints.md#the-timestep-frequency-trap). Every such choice
is a field of `DiTSampling` or of the model config, so nothing is special-cased.

    pipe = DiTPipeline.from_pretrained("DiT-XL-2-256")     # huggingface-cli download facebook/DiT-XL-2-256
    images = pipe(["golden retriever", 88], generator=torch.Generator().manual_seed(0))

Shape legend: B batch (number of labels), C latent channels, S latent side = image side / 8.
"""
from __future__ import annotations

import difflib
import functools
import json
import operator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minidit.diffusion import get_beta_schedule, make_schedule, respace, space_timesteps
from minidit.dit import DiT
from minidit.samplers import ddim_sample, ddpm_sample
from minidit.vae import SD_VAE, AutoencoderKL, decode_latents, to_pil

CLASS_NAMES_FILE = Path(__file__).resolve().parents[1] / "assets" / "imagenet_classes.txt"


# --------------------------------------------------------------------------------------------
# ImageNet class names
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names; index = class id (source: the header of the assets file)."""
    lines = CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def class_ids(labels, num_classes: int = 1000) -> list[int]:
    """Class ids from ids, digit strings or ImageNet names (case-insensitive exact match)."""
    if isinstance(labels, (int, str)):
        labels = [labels]
    ids = []
    for label in labels:
        if isinstance(label, str) and not label.strip().isdigit():
            ids.append(_class_id_from_name(label, num_classes))
            continue
        try:
            label = int(label) if isinstance(label, str) else operator.index(label)   # numpy/torch ints too
        except TypeError:
            raise ValueError(f"class labels are ids or ImageNet names, not {label!r}") from None
        if not 0 <= label < num_classes:
            raise ValueError(f"class id {label} is out of range: this model has classes 0..{num_classes - 1}")
        ids.append(label)
    return ids


def _class_id_from_name(label: str, num_classes: int) -> int:
    names = imagenet_class_names()
    if num_classes != len(names):
        raise ValueError(f"class names are ImageNet's 1000; this model has {num_classes} classes: pass ids")
    wanted = label.strip().lower()
    found = [i for i, name in enumerate(names) if name.lower() == wanted]
    if len(found) > 1:
        raise ValueError(f"{label!r} names {len(found)} ImageNet classes {found}: pass the id instead")
    if not found:
        close = difflib.get_close_matches(wanted, [n.lower() for n in names], n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"{label!r} is not an ImageNet class name.{hint} "
                         f"(All names: {CLASS_NAMES_FILE}; ids 0..999 work too.)")
    return found[0]


# --------------------------------------------------------------------------------------------
# How to sample
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiTSampling:
    """How DiTPipeline turns noise into latents. The defaults are the official DiT sampler."""
    sampler: str = "ddpm"             # "ddpm": ancestral sampling | "ddim": eta = 0
    variance: str = "learned_range"   # ddpm: the model's learned variance (official) | "fixed_small" | "fixed_large"
    timestep_spacing: str = "iddpm"   # "iddpm": space_timesteps (official) | diffusers' "leading" / "trailing" / "linspace"
    steps_offset: int = 0             # diffusers' steps_offset ("leading" only)
    cfg_channels: int | None = 3      # official: guide eps[:, :3]; None: all latent channels (diffusers)
    clip_denoised: bool = False       # clamp the predicted x_0 to [-1, 1]
    step_noise: str = "generator"     # ddpm noise from the call's generator | "global": the global RNG, as
                                      # diffusers' DiTPipeline (it does not pass its generator to step())
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02


OFFICIAL_SAMPLING = DiTSampling()


def sampling_from_scheduler_config(cfg: dict) -> DiTSampling:
    """What diffusers' DiTPipeline does with this `scheduler_config.json`: a DDIMScheduler (what the
    current converter writes) or a DDPMScheduler (what early converted folders hold). Either way the
    pipeline guides all latent channels and drops the learned-sigma half before the step."""
    name = cfg.get("_class_name")
    if name not in ("DDIMScheduler", "DDPMScheduler"):
        raise ValueError(f"scheduler {name!r}: minidit reproduces diffusers' DDIMScheduler and DDPMScheduler; "
                         "use follow='official' for DiT's own sampler")
    unsupported = [k for k, bad in {
        "prediction_type": cfg.get("prediction_type", "epsilon") != "epsilon",
        "trained_betas": cfg.get("trained_betas") is not None,
        "thresholding": cfg.get("thresholding", False),
        "rescale_betas_zero_snr": cfg.get("rescale_betas_zero_snr", False),
        "clip_sample_range": cfg.get("clip_sample_range", 1.0) != 1.0,
        # DDIM: diffusers clips x_0 but keeps the raw eps, and can end at alphas_cumprod[0]
        "clip_sample": name == "DDIMScheduler" and cfg.get("clip_sample", True),
        "set_alpha_to_one": name == "DDIMScheduler" and not cfg.get("set_alpha_to_one", True),
        # DDPM: the pipeline drops the learned variance, so only the fixed variances can be used
        "variance_type": name == "DDPMScheduler" and cfg.get("variance_type", "fixed_small") not in
        ("fixed_small", "fixed_large"),
    }.items() if bad]
    if unsupported:
        raise ValueError(f"{name} options {unsupported} are not supported by minidit's DiT pipeline")
    return DiTSampling(sampler="ddim" if name == "DDIMScheduler" else "ddpm",
                       variance=cfg.get("variance_type", "fixed_small"),
                       timestep_spacing=cfg.get("timestep_spacing", "leading"),
                       steps_offset=cfg.get("steps_offset", 0), cfg_channels=None, step_noise="global",
                       clip_denoised=name == "DDPMScheduler" and cfg.get("clip_sample", True),
                       num_train_timesteps=cfg.get("num_train_timesteps", 1000),
                       beta_schedule=cfg.get("beta_schedule", "linear"), beta_start=cfg.get("beta_start", 1e-4),
                       beta_end=cfg.get("beta_end", 0.02))


def sampling_timesteps(s: DiTSampling, num_steps: int) -> list[int]:
    """The training timesteps the sampler visits (ascending)."""
    T = s.num_train_timesteps
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_inference_steps must be in 1..{T}, got {num_steps}")
    if s.timestep_spacing == "iddpm":
        return space_timesteps(T, [num_steps])
    if s.timestep_spacing == "leading":                         # diffusers' set_timesteps, ascending
        steps = torch.arange(num_steps) * (T // num_steps) + s.steps_offset
    elif s.timestep_spacing == "trailing":
        steps = torch.arange(T, 0, -T / num_steps, dtype=torch.float64).round().long().flip(0) - 1
    elif s.timestep_spacing == "linspace":
        steps = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round().long()
    else:
        raise ValueError(f"unknown timestep_spacing {s.timestep_spacing!r}")
    steps = steps.tolist()
    if steps[-1] >= T or len(set(steps)) != len(steps):
        raise ValueError(f"{s.timestep_spacing!r} spacing with {num_steps} steps and offset {s.steps_offset} "
                         f"gives invalid timesteps {steps[:3]}...{steps[-3:]}")
    # diffusers' DDIM always steps from t to t - T//n: that is a respaced chain only if every visited
    # timestep is T//n after the previous one and the first is below T//n (then it steps to "t < 0").
    r = T // num_steps
    if s.sampler == "ddim" and not (steps[0] < r and all(b - a == r for a, b in zip(steps, steps[1:]))):
        raise ValueError(f"DDIM with {s.timestep_spacing!r} spacing and {num_steps} steps is not a consistent "
                         f"chain in diffusers (it always steps by {r}); use 'leading', or 'trailing' with a "
                         f"step count dividing {T}")
    return steps


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

class DiTPipeline:
    """pipe(class_labels, num_inference_steps=250, guidance_scale=4.0, generator=None) -> [PIL.Image].

    The sampler runs in float32; the transformer and the VAE run in their own dtypes (chosen when
    loading: float32 by default, see `from_pretrained`).
    """

    def __init__(self, transformer: DiT, vae: AutoencoderKL, sampling: DiTSampling = OFFICIAL_SAMPLING):
        self.transformer = transformer.eval()
        self.vae = vae.eval()
        self.sampling = sampling

    @classmethod
    def from_pretrained(cls, folder, *, follow: str = "official", dtype=torch.float32,
                        vae_dtype=torch.float32, device="cpu") -> "DiTPipeline":
        """A diffusers DiT folder (`huggingface-cli download facebook/DiT-XL-2-256 --local-dir DIR`).

        follow="official": DiT's own sampler and timestep embedding (the weights were trained so);
        follow="diffusers": exactly what diffusers' DiTPipeline computes from this folder.
        """
        from weights_loader import load_dit, load_vae
        from weights_loader.dit import dit_config_from_diffusers
        from weights_loader.io import read_config
        folder = Path(folder)
        if follow not in ("official", "diffusers"):
            raise ValueError(f"follow must be 'official' or 'diffusers', not {follow!r}")
        missing = [p for p in ("transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json")
                   if not (folder / p).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a diffusers DiT folder: missing {missing}. Download one with "
                                    "`huggingface-cli download facebook/DiT-XL-2-256 --local-dir DIR`")
        config = dit_config_from_diffusers(read_config(folder / "transformer"))
        config = replace(config, timestep_freq_shift=1 if follow == "diffusers" else 0)
        transformer = load_dit(folder, config, dtype=dtype, device=device)
        vae = load_vae(folder, dtype=vae_dtype, device=device)
        sampling = OFFICIAL_SAMPLING
        if follow == "diffusers":
            sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
            sampling = sampling_from_scheduler_config(sched)
        return cls(transformer, vae, sampling)

    @classmethod
    def from_original(cls, checkpoint, vae, *, config=None, dtype=torch.float32, vae_dtype=torch.float32,
                      device="cpu") -> "DiTPipeline":
        """An original `DiT-XL-2-256x256.pt` plus a VAE: a diffusers folder (`stabilityai/sd-vae-ft-mse`)
        or an ldm file (read as the SD VAE, scaling 0.18215, as the official `sample.py` does).
        `config` (a `DiTConfig`) is only needed for checkpoints whose size is not one of the paper's."""
        from weights_loader import load_dit, load_vae
        transformer = load_dit(checkpoint, config, dtype=dtype, device=device)
        vae_config = None if Path(vae).is_dir() else SD_VAE
        return cls(transformer, load_vae(vae, vae_config, dtype=vae_dtype, device=device))

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps: int = 250, guidance_scale: float = 4.0,
                 generator: torch.Generator | None = None, output_type: str = "pil", progress: bool = True):
        """Images for `class_labels` (ids or ImageNet names). output_type "pil" -> list of PIL images,
        "pt" -> (B, 3, H, W) float in [0, 1], "latent" -> the denoised latents (B, C, S, S).

        guidance_scale <= 1 runs the conditional model alone, as diffusers and DiT's sample_ddp.py do.
        """
        model, s = self.transformer, self.sampling
        cfg = model.config
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        labels = torch.tensor(class_ids(class_labels, cfg.num_classes), device=device)
        B, C, S = len(labels), cfg.in_channels, cfg.input_size
        # x_T: drawn like diffusers' randn_tensor (on the generator's device) or, without a
        # generator, from the global RNG on `device` like the official sample.py.
        noise_device = generator.device if generator is not None else device
        x = torch.randn(B, C, S, S, generator=generator, device=noise_device).to(device)   # (B, C, S, S)
        guided = guidance_scale > 1
        if guided:   # one batch holding [cond | uncond]; both halves stay identical, as officially
            x = torch.cat([x, x])                                                           # (2B, C, S, S)
            y = torch.cat([labels, torch.full_like(labels, cfg.num_classes)])               # null class

            def model_fn(x_t, t):
                return model.forward_with_cfg(x_t.to(dtype), t, y, guidance_scale, s.cfg_channels).float()
        else:
            def model_fn(x_t, t):
                return model(x_t.to(dtype), t, labels).float()
        betas = get_beta_schedule(s.beta_schedule, s.num_train_timesteps, s.beta_start, s.beta_end)
        schedule = respace(make_schedule(betas), sampling_timesteps(s, num_inference_steps))
        if s.sampler == "ddpm":
            learned = s.variance == "learned_range"
            # a DiT without learned sigma samples with beta_t, as the official create_diffusion does
            variance = s.variance if not learned else "fixed_small" if cfg.learn_sigma else "fixed_large"
            step_generator = generator if s.step_noise == "generator" else None
            x = ddpm_sample(model_fn, x, schedule, learn_sigma=learned and cfg.learn_sigma, variance=variance,
                            clip_denoised=s.clip_denoised, generator=step_generator, progress=progress)
        elif s.sampler == "ddim":
            x = ddim_sample(model_fn, x, schedule, clip_denoised=s.clip_denoised, generator=generator,
                            progress=progress)
        else:
            raise ValueError(f"unknown sampler {s.sampler!r}: use 'ddpm' or 'ddim'")
        latents = x[:B]                                                                     # (B, C, S, S)
        if output_type == "latent":
            return latents
        image = decode_latents(self.vae, latents)                                           # (B, 3, 8S, 8S)
        if output_type == "pt":
            return (image.float() / 2 + 0.5).clamp(0, 1)
        if output_type == "pil":
            return to_pil(image)
        raise ValueError(f"output_type must be 'pil', 'pt' or 'latent', not {output_type!r}")
