"""`python -m minidit generate --model sd3.5-medium --weights DIR --prompt "..."`: SD3's command line.

`minidit/cli.py` builds the parser from the model table; this module gives SD3's rows (`MODELS`),
its options (`add_arguments`), its defaults (each release's official steps and CFG,
`minidit.pipelines.sd3.OFFICIAL_SAMPLING`) and its run function (`generate`). The command line
samples the official way: the official file with its text encoders if the folder has them, else the
diffusers folder with the official sampling. A wrong or missing folder prints the download commands.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from weights_loader.errors import CheckpointError
from .common import ModelEntry, default_device, hub_download, run_text_to_image, text_arguments_error
from .sd3 import OFFICIAL_SAMPLING, SD3Pipeline, release_name

FAMILY = "sd3"
TITLE = "SD3 / SD3.5 (text-to-image, rectified flow)"
PIPELINE = SD3Pipeline
SIZE_STEP = 16                  # VAE downsampling 8 x patch size 2, in every release
MODELS = (
    ModelEntry("sd3-medium", FAMILY, "SD3-medium MM-DiT (2.0B) + CLIP-L, bigG, T5-XXL + SD3 VAE", 1024,
               "stabilityai/stable-diffusion-3-medium-diffusers", "sd3_medium.safetensors"),
    ModelEntry("sd3.5-large", FAMILY, "SD3.5-large MM-DiT (8.1B, QK-norm) + CLIP-L, bigG, T5-XXL + SD3 VAE", 1024,
               "stabilityai/stable-diffusion-3.5-large", "sd3.5_large.safetensors"),
    ModelEntry("sd3.5-large-turbo", FAMILY, "SD3.5-large-turbo (8.1B, distilled: 4 Euler steps, no CFG)", 1024,
               "stabilityai/stable-diffusion-3.5-large-turbo", "sd3.5_large_turbo.safetensors"),
    ModelEntry("sd3.5-medium", FAMILY, "SD3.5-medium MMDiT-X (2.2B, QK-norm, dual attention in layers 0-12)", 1024,
               "stabilityai/stable-diffusion-3.5-medium", "sd3.5_medium.safetensors"),
)


def defaults(entry: ModelEntry) -> dict:
    s = OFFICIAL_SAMPLING[entry.name]
    return {"steps": s.steps, "guidance": s.guidance}


def add_arguments(group) -> None:
    group.add_argument("--no-t5", action="store_true", help="drop T5-XXL (zeros in its place) to fit a small card")


def how_to_get(entry: ModelEntry) -> str:
    local = entry.repo.split("/")[1]
    return (f"Get the {entry.name} weights (a gated repository: accept its licence on the hub, then "
            f"`huggingface-cli login`) with\n"
            f"  {hub_download(entry)}\n"
            f"  python -m minidit generate --model {entry.name} --weights {local} --prompt \"...\"\n"
            f"(the folder holds the official {entry.original} with text_encoders/ and the tokenizers, and the "
            f"diffusers layout; either is used)")


def _load(entry: ModelEntry, weights: Path, dtype, device, drop_t5: bool) -> SD3Pipeline:
    checkpoint = weights if weights.is_file() else weights / entry.original
    root = checkpoint.parent
    if checkpoint.is_file() and (root / "text_encoders").is_dir():
        return SD3Pipeline.from_single_file(checkpoint, text_encoders=root / "text_encoders", tokenizers=root,
                                            drop_t5=drop_t5, sampling=OFFICIAL_SAMPLING[entry.name], dtype=dtype,
                                            device=device)
    if (weights / "model_index.json").is_file():
        return SD3Pipeline.from_pretrained(weights, sampling=OFFICIAL_SAMPLING[entry.name], drop_t5=drop_t5,
                                           dtype=dtype, device=device)
    raise FileNotFoundError(f"{weights}: neither {entry.original} with a text_encoders/ folder beside it nor a diffusers "
                            "SD3 folder (model_index.json)")


def generate(args, entry: ModelEntry, call_kwargs: dict) -> int:
    """Run `generate` for an SD3 row whose --weights exist; `call_kwargs` holds the pipeline arguments
    given on the command line."""
    problem = text_arguments_error(args, "SD3")
    sizes = [f"--{o} {getattr(args, o)}" for o in ("height", "width") if getattr(args, o) is not None
             and getattr(args, o) % SIZE_STEP]
    if sizes and not problem:   # before loading: every release has an f8 VAE and 2x2 patches
        problem = f"{', '.join(sizes)}: SD3 sizes are multiples of {SIZE_STEP} (VAE factor 8 x patch 2), e.g. 1024"
    if problem:
        print(problem, file=sys.stderr)
        return 2
    device = default_device(args.device)
    dtype = torch.float32 if args.dtype is None else getattr(torch, args.dtype)
    try:
        pipe = _load(entry, Path(args.weights), dtype, device, args.no_t5)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    try:
        found = release_name(pipe.transformer)
    except ValueError:
        found = None                # not a release's size (a test model): nothing to compare
    if found is not None and found.replace("-turbo", "") != entry.name.replace("-turbo", ""):
        print(f"these are {found} weights, not {entry.name}.\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    return run_text_to_image(pipe, args, call_kwargs)
