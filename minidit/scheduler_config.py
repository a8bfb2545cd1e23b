"""A diffusers `scheduler_config.json` (as a dict) -> `samplers.Sampler`: which sampler, on which grid.

The one place where diffusers' scheduler options are read. Every pipeline folder names its scheduler
class and options; minidit reproduces these four, step by step (tests/test_samplers.py):

    DDPMScheduler                    ancestral DDPM   (early DiT folders; Hunyuan-DiT: v-prediction)
    DDIMScheduler                    DDIM, eta = 0    (DiT folders of the current converter)
    DPMSolverMultistepScheduler      DPM-Solver++(2M) (every PixArt folder)
    FlowMatchEulerDiscreteScheduler  Euler on the rectified flow (SD3 / SD3.5), also with
                                     use_dynamic_shifting (the grid then needs the image's token
                                     count: `Sampler.grid(n, image_seq_len=...)`)

An option that would change the numbers and that minidit does not reproduce raises a ValueError
naming it: nothing is silently ignored. The file itself is read by `weights_loader`.
"""
from __future__ import annotations

from .flow import TIME_SHIFT_TYPES, DynamicShift
from .samplers import Sampler

SUPPORTED = ("DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _refuse(name: str, cfg: dict, checks: dict) -> None:
    """checks: option -> (diffusers' default, allowed values). Raise listing every option outside them."""
    bad = {k: cfg.get(k, default) for k, (default, allowed) in checks.items() if cfg.get(k, default) not in allowed}
    if bad:
        allowed = {k: allowed for k, (_, allowed) in checks.items() if k in bad}
        raise ValueError(f"{name} options {bad} are not supported by minidit's samplers (supported: {allowed})")


def _betas(cfg: dict) -> dict:
    return dict(num_train_timesteps=cfg.get("num_train_timesteps", 1000),
                beta_schedule=cfg.get("beta_schedule", "linear"),
                beta_start=cfg.get("beta_start", 1e-4), beta_end=cfg.get("beta_end", 0.02))


# options every discrete (DDPM-trained) scheduler may carry, with diffusers' defaults
_DISCRETE = {"beta_schedule": ("linear", BETA_SCHEDULES), "trained_betas": (None, (None,)),
             "thresholding": (False, (False,)), "rescale_betas_zero_snr": (False, (False,)),
             "timestep_spacing": ("leading", ("leading", "trailing", "linspace"))}


def sampler_from_scheduler_config(cfg: dict) -> Sampler:
    """The `Sampler` that reproduces the diffusers scheduler described by `cfg` (its `_class_name`
    and options, diffusers' defaults for the ones not given)."""
    name = cfg.get("_class_name")
    if name == "DDPMScheduler":
        _refuse(name, cfg, {**_DISCRETE, "prediction_type": ("epsilon", ("epsilon", "v_prediction", "sample")),
                            "variance_type": ("fixed_small", ("fixed_small", "fixed_large", "learned_range")),
                            "clip_sample_range": (1.0, (1.0,))})
        return Sampler("ddpm", prediction_type=cfg.get("prediction_type", "epsilon"),
                       variance=cfg.get("variance_type", "fixed_small"), clip_denoised=cfg.get("clip_sample", True),
                       spacing=cfg.get("timestep_spacing", "leading"), steps_offset=cfg.get("steps_offset", 0),
                       **_betas(cfg))
    if name == "DDIMScheduler":
        # diffusers' DDIM clips x0 but keeps the raw eps (minidit, like the official code, recomputes
        # eps from the clipped x0), and can end at alphas_cumprod[0] instead of the data: both refused.
        _refuse(name, cfg, {**_DISCRETE, "prediction_type": ("epsilon", ("epsilon", "v_prediction", "sample")),
                            "clip_sample": (True, (False,)), "set_alpha_to_one": (True, (True,))})
        return Sampler("ddim", prediction_type=cfg.get("prediction_type", "epsilon"),
                       spacing=cfg.get("timestep_spacing", "leading"), steps_offset=cfg.get("steps_offset", 0),
                       **_betas(cfg))
    if name == "DPMSolverMultistepScheduler":
        _refuse(name, cfg, {**_DISCRETE, "timestep_spacing": ("linspace", ("linspace", "leading", "trailing")),
                            "prediction_type": ("epsilon", ("epsilon", "v_prediction", "sample")),
                            "algorithm_type": ("dpmsolver++", ("dpmsolver++",)), "solver_order": (2, (2,)),
                            "solver_type": ("midpoint", ("midpoint",)), "lower_order_final": (True, (True,)),
                            "euler_at_final": (False, (False,)), "final_sigmas_type": ("zero", ("zero",)),
                            "use_karras_sigmas": (False, (False,)), "use_lu_lambdas": (False, (False,)),
                            "use_exponential_sigmas": (False, (False,)), "use_beta_sigmas": (False, (False,)),
                            "use_flow_sigmas": (False, (False,)), "lambda_min_clipped": (float("-inf"), (float("-inf"),)),
                            # a pipeline drops the learned-sigma half itself (diffusers' own drop keeps 3 channels)
                            "variance_type": (None, (None,))})
        return Sampler("dpm_solver++", prediction_type=cfg.get("prediction_type", "epsilon"),
                       spacing=cfg.get("timestep_spacing", "linspace"), steps_offset=cfg.get("steps_offset", 0),
                       **_betas(cfg))
    if name == "FlowMatchEulerDiscreteScheduler":
        _refuse(name, cfg, {"invert_sigmas": (False, (False,)), "time_shift_type": ("exponential", TIME_SHIFT_TYPES),
                            "shift_terminal": (None, (None,)), "use_karras_sigmas": (False, (False,)),
                            "use_exponential_sigmas": (False, (False,)), "use_beta_sigmas": (False, (False,)),
                            "stochastic_sampling": (False, (False,))})
        common = dict(prediction_type="flow", spacing="flow", num_train_timesteps=cfg.get("num_train_timesteps", 1000))
        if not cfg.get("use_dynamic_shifting", False):
            return Sampler("euler", shift=float(cfg.get("shift", 1.0)), **common)
        # diffusers ignores `shift` here: the grid's shift comes from mu, i.e. from the image size
        dynamic = DynamicShift(base_shift=cfg.get("base_shift", 0.5), max_shift=cfg.get("max_shift", 1.15),
                               base_image_seq_len=cfg.get("base_image_seq_len", 256),
                               max_image_seq_len=cfg.get("max_image_seq_len", 4096),
                               time_shift_type=cfg.get("time_shift_type", "exponential"))
        return Sampler("euler", dynamic_shift=dynamic, **common)
    raise ValueError(f"scheduler {name!r}: minidit reproduces {', '.join(SUPPORTED)}")
