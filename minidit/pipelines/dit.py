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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from minidit.dit import DiT
from minidit.errors import InputError
from minidit.samplers import Sampler
from minidit.scheduler_config import sampler_from_scheduler_config
from minidit.vae import SD_VAE, AutoencoderKL
from weights_loader import PipelineFolder, load_dit, load_vae
from weights_loader.dit import read_dit_config
from weights_loader.io import build_on_meta
from .checks import (check_finite, check_flag, check_generator, check_guidance, check_steps, finite_steps, is_integer,
                     precision_hint)
from .common import (Staged, StagedPipeline, check_output_type, decode_tiled_if_large, guided_model_fn, initial_noise, offload_to,
                     staged_or_loaded, to_output)

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
    """Class ids from ids, digit strings or ImageNet names (case-insensitive exact match). Bools, floats
    (1.7 is not a class; 1.0 neither) and an empty list are refused (InputError), never rounded."""
    if isinstance(labels, torch.Tensor):
        labels = labels.reshape(-1).tolist()
    if isinstance(labels, (int, str, np.integer)):
        labels = [labels]
    if not isinstance(labels, (list, tuple, np.ndarray, range)):
        raise InputError(f"class_labels must be a class id, an ImageNet name or a list of them, not {labels!r} "
                         f"({type(labels).__name__})")
    if len(labels) == 0:
        raise InputError("class_labels is empty: pass at least one class id or name, e.g. [207]")
    ids = []
    for label in labels:
        if isinstance(label, torch.Tensor) and label.ndim == 0:                  # a 0-d tensor: its value
            label = label.item()
        if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
            ids.append(_class_id_from_name(label, num_classes))
            continue
        if isinstance(label, (bool, np.bool_)) or not (isinstance(label, str) or is_integer(label)):
            raise InputError(f"class labels are integer ids or ImageNet names, not {label!r} ({type(label).__name__})")
        label = int(label)                                                  # digit strings, numpy/torch ints
        if not 0 <= label < num_classes:
            raise InputError(f"class id {label} is out of range: this model has classes 0..{num_classes - 1}")
        ids.append(label)
    return ids


def _class_id_from_name(label: str, num_classes: int) -> int:
    names = imagenet_class_names()
    if num_classes != len(names):
        raise InputError(f"class names are ImageNet's 1000; this model has {num_classes} classes: pass ids")
    wanted = label.strip().lower()
    found = [i for i, name in enumerate(names) if name.lower() == wanted]
    if len(found) > 1:
        raise InputError(f"{label!r} names {len(found)} ImageNet classes {found}: pass the id instead")
    if not found:
        close = difflib.get_close_matches(wanted, [n.lower() for n in names], n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
        raise InputError(f"{label!r} is not an ImageNet class name.{hint} "
                         f"(All names: {CLASS_NAMES_FILE}; ids 0..999 work too.)")
    return found[0]


# --------------------------------------------------------------------------------------------
# How to sample
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiTSampling:
    """How DiTPipeline turns noise into latents. The defaults are the official DiT sampler."""
    # the sampler and its grid: official = 250 IDDPM-respaced DDPM steps with the learned variance
    sampler: Sampler = Sampler("ddpm", variance="learned_range", spacing="iddpm")
    cfg_channels: int | None = 3      # official: guide eps[:, :3]; None: all latent channels (diffusers)
    step_noise: str = "generator"     # ddpm noise from the call's generator | "global": the global RNG, as
                                      # diffusers' DiTPipeline (it does not pass its generator to step())


OFFICIAL_SAMPLING = DiTSampling()


def sampling_from_scheduler_config(cfg: dict) -> DiTSampling:
    """What diffusers' DiTPipeline does with this `scheduler_config.json`: its scheduler (a
    DDIMScheduler from the current converter, a DDPMScheduler in early converted folders), guidance
    on all latent channels, step noise from the global RNG, and the learned-sigma half dropped
    before the step (so the scheduler's own learned variance cannot be used)."""
    sampler = sampler_from_scheduler_config(cfg)
    if sampler.name not in ("ddpm", "ddim") or sampler.prediction_type != "epsilon":
        raise ValueError(f"{cfg.get('_class_name')} with prediction_type={sampler.prediction_type!r}: diffusers' "
                         "DiTPipeline runs an epsilon DDIMScheduler or DDPMScheduler; use follow='official' for "
                         "DiT's own sampler")
    if sampler.variance == "learned_range":
        raise ValueError("DDPMScheduler options {'variance_type': 'learned_range'}: diffusers' DiTPipeline drops the "
                         "learned variance before the step, so only fixed_small / fixed_large can be reproduced")
    return DiTSampling(sampler=sampler, cfg_channels=None, step_noise="global")


def null_half_noise(generator: torch.Generator | None):
    """The sampler's noise_fn for DiT's official random stream. The official sample.py (and
    diffusers' DiTPipeline) carry the null-class half of the guided batch through the sampler and
    discard it at the end, so every step draws noise for 2B samples, of which the kept B use the
    first half. Only the random stream depends on this: the kept samples see standard CFG."""
    def noise_fn(x):
        shape = (2 * x.shape[0], *x.shape[1:])
        if generator is None:
            return torch.randn(shape, device=x.device, dtype=x.dtype)[: x.shape[0]]
        return torch.randn(shape, generator=generator, device=generator.device, dtype=x.dtype)[: x.shape[0]].to(x.device)
    return noise_fn


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

class DiTPipeline(StagedPipeline):
    """pipe(class_labels, num_inference_steps=250, guidance_scale=4.0, generator=None) -> [PIL.Image].

    The sampler runs in float32; the transformer and the VAE run in their own dtypes (chosen when
    loading: float32 by default, see `from_pretrained`).
    """

    def __init__(self, transformer: DiT, vae: AutoencoderKL, sampling: DiTSampling = OFFICIAL_SAMPLING, *,
                 offload: bool = False, device=None, transformer_loader=None, keep_transformer: bool = True):
        """`offload=True`: the transformer and the VAE wait on the CPU and each is moved to `device` for
        its stage only. `transformer_loader`: then `transformer` is a skeleton on the meta device (its
        config, no weights), the real one is loaded by `transformer_loader()` for the denoising and, with
        keep_transformer=False, freed before the VAE decodes (`StagedPipeline.stage_transformer`)."""
        check_flag(offload, "offload")
        if device is None:
            device = "cpu" if transformer_loader is not None else next(transformer.parameters()).device
        self._device = torch.device(device)
        self.stage_transformer(transformer, transformer_loader, keep=keep_transformer, offload=offload, device=device,
                               what="DiT transformer")
        self.decoder = Staged(vae.eval(), what="VAE")
        self.sampling = sampling
        if offload:
            offload_to(self._device, self.decoder)

    @classmethod
    def from_pretrained(cls, folder, *, follow: str = "official", dtype=torch.float32,
                        vae_dtype=torch.float32, device="cpu", keep_transformer: bool = True,
                        offload: bool = False) -> "DiTPipeline":
        """A diffusers DiT folder (`huggingface-cli download facebook/DiT-XL-2-256 --local-dir DIR`).

        follow="official": DiT's own sampler and timestep embedding (the weights were trained so);
        follow="diffusers": exactly what diffusers' DiTPipeline computes from this folder.
        `offload=True`: see `DiTPipeline(...)`. keep_transformer=False: only transformer/config.json is
        read here; the transformer is loaded for the denoising and freed before the VAE decodes (each call
        reads it from disk again).
        """
        if follow not in ("official", "diffusers"):
            raise ValueError(f"follow must be 'official' or 'diffusers', not {follow!r}")
        parts = PipelineFolder(folder, hint="Download one with `huggingface-cli download facebook/DiT-XL-2-256 "
                                            "--local-dir DIR`")
        parts.require("transformer", "vae", "scheduler")
        load_to = "cpu" if check_flag(offload, "offload") else device       # offloaded parts wait on the CPU
        transformer_dir = parts.component("transformer")
        overrides = {"timestep_freq_shift": 1 if follow == "diffusers" else 0}
        transformer, transformer_loader = staged_or_loaded(
            lambda: load_dit(transformer_dir, dtype=dtype, device=load_to, overrides=overrides),
            lambda: build_on_meta(DiT, read_dit_config(transformer_dir, overrides)), keep_transformer)
        vae = load_vae(parts.component("vae"), dtype=vae_dtype, device=load_to)
        sampling = OFFICIAL_SAMPLING if follow == "official" else sampling_from_scheduler_config(parts.scheduler_config())
        return cls(transformer, vae, sampling, offload=offload, device=device, transformer_loader=transformer_loader,
                   keep_transformer=keep_transformer)

    @classmethod
    def from_original(cls, checkpoint, vae, *, config=None, dtype=torch.float32, vae_dtype=torch.float32,
                      device="cpu", keep_transformer: bool = True, offload: bool = False) -> "DiTPipeline":
        """An original `DiT-XL-2-256x256.pt` plus a VAE: a diffusers folder (`stabilityai/sd-vae-ft-mse`)
        or an ldm file (read as the SD VAE, scaling 0.18215, as the official `sample.py` does).
        `config` (a `DiTConfig`) is only needed for checkpoints whose size is not one of the paper's.
        keep_transformer=False, offload: as in `from_pretrained`; the config is then read off the file's keys
        and shapes (`weights_loader.dit.read_dit_config`: a torch.save zip archive is memory-mapped and only
        its index read; a legacy pre-zip pickle is read whole once for that, then freed)."""
        load_to = "cpu" if check_flag(offload, "offload") else device
        transformer, transformer_loader = staged_or_loaded(
            lambda: load_dit(checkpoint, config, dtype=dtype, device=load_to),
            lambda: build_on_meta(DiT, config or read_dit_config(checkpoint)), keep_transformer)
        vae_config = None if Path(vae).is_dir() else SD_VAE
        return cls(transformer, load_vae(vae, vae_config, dtype=vae_dtype, device=load_to), offload=offload,
                   device=device, transformer_loader=transformer_loader, keep_transformer=keep_transformer)

    def _denoise(self, model: DiT, labels, x_T, steps: int, guidance_scale: float, generator, progress: bool):
        """x_T (B, C, S, S) -> the sampler's run with the (guided) transformer -> latents (B, C, S, S)."""
        s, cfg, guided = self.sampling, model.config, guidance_scale > 1
        dtype = next(model.parameters()).dtype
        if guided:   # one network call on [cond | null class]
            y = torch.cat([labels, torch.full_like(labels, cfg.num_classes)])               # (2B,)
            model_fn = guided_model_fn(lambda x2, t2: model(x2.to(dtype), t2, y).float(), guidance_scale,
                                       guided_channels=s.cfg_channels)
        else:
            def model_fn(x_t, t):
                return model(x_t.to(dtype), t, labels).float()
        sampler = s.sampler
        if sampler.variance == "learned_range" and not cfg.learn_sigma:
            sampler = replace(sampler, variance="fixed_large")   # official create_diffusion without learned sigma
        step_generator = generator if s.step_noise == "generator" else None
        hint = precision_hint(model, "the DiT transformer", "dtype")
        latents = sampler.run(finite_steps(model_fn, "denoising", hint), x_T, steps, learn_sigma=cfg.learn_sigma,
                              generator=step_generator, noise_fn=null_half_noise(step_generator) if guided else None,
                              progress=progress)                                           # (B, C, S, S)
        check_finite(latents, "denoising", hint)
        return latents

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps: int = 250, guidance_scale: float = 4.0,
                 generator: torch.Generator | None = None, output_type: str = "pil", progress: bool = True):
        """Images for `class_labels` (ids or ImageNet names). output_type "pil" -> list of PIL images,
        "np" -> (B, H, W, 3) / "pt" -> (B, 3, H, W) float in [0, 1], "latent" -> the denoised latents
        (B, C, S, S).

        guidance_scale in [0, 1] runs the conditional model alone, as diffusers and DiT's sample_ddp.py do;
        a negative, NaN or inf scale is refused (`pipelines/checks.py`), as are steps outside 1..1000.
        A stage that produces NaN/inf (a model call, the decode) raises NonFiniteError naming it.
        """
        check_output_type(output_type)
        check_steps(num_inference_steps)
        guidance_scale = check_guidance(guidance_scale)
        check_generator(generator)
        cfg, device = self.transformer.config, self._device
        labels = torch.tensor(class_ids(class_labels, cfg.num_classes), device=device)
        B, C, S = len(labels), cfg.in_channels, cfg.input_size
        x_T = initial_noise((B, C, S, S), generator, device)                               # (B, C, S, S)
        self.last_run_stats = {"denoise": {}}        # the transformer's load time, when staged (no stage timing here)
        with self.denoising(self.last_run_stats["denoise"]) as model:
            # a method, so that no local of this frame still holds the transformer when the stage frees it
            latents = self._denoise(model, labels, x_T, num_inference_steps, guidance_scale, generator, progress)
            del model
        if output_type == "latent":
            return latents
        with self.decoder.use() as vae:
            image, _ = decode_tiled_if_large(vae, latents)                                 # (B, 3, 8S, 8S)
        return to_output(image, output_type)
