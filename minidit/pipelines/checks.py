"""The validation layer of every entry point: pipeline calls, samplers of the toy, the command line.

Each function refuses one kind of argument with an `InputError` that names the argument, the value
and what to pass, or returns the value to use. The rule: a value given is a value used or refused,
never swapped for a default (no `x or default`, no comparison that NaN slips through).

    check_int / check_steps / check_count     integers (bools refused), with their range
    check_guidance                            a finite number >= 0 (why not negative: see below)
    check_guidance_rescale                    a number in [0, 1] (Hunyuan-DiT's guidance_rescale)
    check_size                                height / width: positive integers, multiples of the model's step
    check_prompts / check_negative_prompts    str or a non-empty list of str; None negative = "" (diffusers)
    check_max_sequence_length                 None or a positive integer
    check_generator                           None or a torch.Generator
    check_output_type                         "pil" | "np" | "pt" | "latent"
    check_seed / check_device / check_output_path   the command line's --seed, --device, --out
    check_finite / finite_steps               NaN/inf after a stage (NonFiniteError naming it)

Guidance below 0 is refused, not warned about: uncond + s (cond - uncond) with s < 0 steers the
sample *away* from the prompt or class, which is not classifier-free guidance, and diffusers would
silently run such a call unguided. Scales in [0, 1] run the conditional model alone in the DiT, PixArt
and SD3 pipelines (diffusers' `guidance_scale > 1` convention, documented in each __call__); the toy
applies the formula for every scale but 1 (0 = the unconditional model).
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minidit.errors import InputError, NonFiniteError

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
SEED_RANGE = (0, 2**64 - 1)          # what torch.Generator.manual_seed takes without wrapping around


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def is_integer(value) -> bool:
    """An int (Python, NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, *, minimum: int | None = 1, maximum: int | None = None, hint: str = "") -> int:
    """`value` as an int, if it is an integer in [minimum, maximum]; else an InputError naming `name`."""
    if not is_integer(value):
        raise InputError(f"{name} must be an integer, got {_describe(value)}. {hint}".strip())
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        span = (f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else
                f"at least {minimum}" if minimum is not None else f"at most {maximum}")
        raise InputError(f"{name} must be {span}, got {value}. {hint}".strip())
    return int(value)


def check_steps(value, name: str = "num_inference_steps", maximum: int | None = 1000) -> int:
    """A step count: an integer in 1..maximum (1000 = the training steps of every DDPM schedule here)."""
    return check_int(value, name, minimum=1, maximum=maximum)


def check_count(value, name: str) -> int:
    """A count that must be at least 1 (num_images_per_prompt, --count)."""
    return check_int(value, name, minimum=1)


def check_guidance(value, name: str = "guidance_scale") -> float:
    """A finite real number >= 0 (see the module docstring for why negative scales are refused)."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be a number, got {_describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}: NaN or inf guidance gives NaN images")
    if value < 0:
        raise InputError(f"{name} must be >= 0, got {value}: a negative scale steers away from the condition, "
                         "which is not classifier-free guidance. Pass 1 to run without guidance")
    return value


def check_guidance_rescale(value) -> float:
    """guidance_rescale: a finite number in [0, 1]. It mixes phi * rescaled + (1 - phi) * guided
    (`guidance.rescale_cfg`); the paper's phi is a weight in [0, 1] (0.7 recommended), diffusers does not
    check it, and a phi outside [0, 1] extrapolates past both predictions, so it is refused."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise InputError(f"guidance_rescale must be a number in [0, 1], got {value!r} ({type(value).__name__})")
    value = float(value)
    if not 0 <= value <= 1:          # NaN fails both comparisons: refused too
        raise InputError(f"guidance_rescale must be between 0 and 1 (0: plain CFG; 0.7 in the paper), got {value}")
    return value


def check_size(height, width, multiple: int = 1, why: str = "") -> tuple[int, int]:
    """height and width: positive integers, multiples of `multiple` (the VAE's factor x the patch size)."""
    for name, value in (("height", height), ("width", width)):
        check_int(value, name, minimum=1)
    if height % multiple or width % multiple:
        raise InputError(f"height and width must be multiples of {multiple}{f' ({why})' if why else ''}, "
                         f"got {height}x{width}")
    return int(height), int(width)


def check_prompts(prompt, name: str = "prompt") -> list[str]:
    """A string or a non-empty list/tuple of strings -> the list."""
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, (list, tuple)):
        raise InputError(f"{name} must be a string or a list of strings, got {_describe(prompt)}")
    bad = [i for i, p in enumerate(prompt) if not isinstance(p, str)]
    if bad:
        raise InputError(f"{name} must be a string or a list of strings: entry {bad[0]} is "
                         f"{_describe(prompt[bad[0]])}")
    if not prompt:
        raise InputError(f"{name} is an empty list: pass at least one (an empty prompt is the string \"\")")
    return list(prompt)


def check_negative_prompts(negative_prompt, count: int) -> list[str]:
    """One negative prompt per prompt: a string (for all), None (= "", as diffusers reads None), or a list
    with one string per prompt."""
    if negative_prompt is None:
        return [""] * count
    if isinstance(negative_prompt, str):
        return [negative_prompt] * count
    negatives = check_prompts(negative_prompt, "negative_prompt")
    if len(negatives) != count:
        raise InputError(f"{len(negatives)} negative prompts for {count} prompts: pass one string (used for every "
                         "prompt) or one per prompt")
    return negatives


def check_max_sequence_length(value, maximum: int | None = None) -> int | None:
    """None (the model's own length) or a positive integer."""
    if value is None:
        return None
    return check_int(value, "max_sequence_length", minimum=1, maximum=maximum,
                     hint="None uses the model's own caption length")


def check_generator(generator) -> None:
    """None (the global RNG) or a torch.Generator."""
    if generator is not None and not isinstance(generator, torch.Generator):
        hint = (" (a NumPy generator cannot drive torch's sampling)" if isinstance(generator, np.random.Generator)
                else " (a seed goes into one: torch.Generator().manual_seed(seed))" if is_integer(generator) else "")
        raise InputError(f"generator must be a torch.Generator or None, got {_describe(generator)}{hint}")


def check_output_type(output_type) -> None:
    """Refuse an unknown output_type before anything is computed."""
    if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
        raise InputError(f"output_type must be one of {', '.join(repr(o) for o in OUTPUT_TYPES)}, not {output_type!r}")


def check_flag(value, name: str) -> bool:
    """A real bool (True/False), not a truthy stand-in."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


# --------------------------------------------------------------------------------------------
# The command line's own options
# --------------------------------------------------------------------------------------------

def check_seed(seed, option: str = "--seed") -> int:
    return check_int(seed, option, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                     hint="(a torch.Generator takes seeds 0..2**64-1)")


def check_device(device: str) -> str:
    """A device torch knows and this machine has: cpu, cuda[:N] (with CUDA), mps (with MPS)."""
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"--device {device!r} is not a device torch knows: use cpu, cuda, cuda:N or mps") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no CUDA device here (torch.cuda.is_available() is False: "
                             "no GPU, or a CPU-only build of torch). Use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices (cuda:0.."
                             f"cuda:{torch.cuda.device_count() - 1})")
    elif d.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {device}: MPS (Apple GPU) is not available here. Use --device cpu")
    elif d.type != "cpu":
        raise InputError(f"--device {device}: minidit runs on cpu, cuda or mps, not {d.type}")
    return device


def image_extensions() -> set[str]:
    """The file extensions PIL can write (.png, .jpg, .webp, ...)."""
    Image.init()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def check_output_path(path, option: str = "--out") -> Path:
    """An image file to write: not a folder, an extension PIL writes, in a folder that exists and is
    writable. Checked before any weight is loaded; folders are never created (make them first)."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{option} {path} is a folder: give a file name, e.g. {out / 'out.png'}")
    if out.suffix.lower() not in image_extensions():
        raise InputError(f"{option} {path} has no image extension PIL can write ({out.suffix or 'none'}): "
                         "use .png, .jpg or .webp")
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"{option} {path}: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")
    return out


# --------------------------------------------------------------------------------------------
# NaN / inf after a stage
# --------------------------------------------------------------------------------------------

def check_finite(tensor: torch.Tensor, stage: str, hint: str) -> torch.Tensor:
    """`tensor` if it is finite; else a NonFiniteError naming the stage, the share of bad values and `hint`."""
    if torch.isfinite(tensor).all():
        return tensor
    bad = (~torch.isfinite(tensor)).float().mean().item()
    raise NonFiniteError(f"{stage} produced NaN/inf in {bad:.1%} of its values ({tensor.dtype}). {hint}")


def precision_hint(module: torch.nn.Module, what: str, argument: str) -> str:
    """What to try when `module` (the network of a stage) produced NaN/inf, by its dtype."""
    dtype = next(module.parameters()).dtype
    if dtype == torch.float16:
        return (f"{what} runs in float16, which overflows for models trained in bfloat16: load it in bfloat16 or "
                f"float32 ({argument}=torch.bfloat16).")
    return f"{what} runs in {str(dtype).replace('torch.', '')}: check its weights for NaN/inf (a damaged file?)."


def finite_steps(model_fn, stage: str, hint: str):
    """model_fn that checks every network output; the error names the step (1-based)."""
    calls = {"n": 0}

    def checked(x, t):
        calls["n"] += 1
        return check_finite(model_fn(x, t), f"{stage}, model call {calls['n']},", hint)
    return checked
