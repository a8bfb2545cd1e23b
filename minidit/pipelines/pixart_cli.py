"""`python -m minidit generate --model pixart-sigma-1024 --weights DIR --prompt "..."`: PixArt's command line.

`minidit/cli.py` builds the parser from the model table; this module gives PixArt's rows (`MODELS`),
its options (`add_arguments`) and its run function (`generate`). Step count and guidance default to
`PixArtPipeline.__call__`'s own. A wrong or missing folder prints the exact download commands.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from minidit.pixart import CAPTION_TOKENS
from weights_loader.errors import CheckpointError
from .common import ModelEntry, default_device, run_text_to_image, signature_defaults, text_arguments_error
from .pixart import PixArtPipeline

FAMILY = "pixart"
TITLE = "PixArt-α / PixArt-Σ (text-to-image)"
PIPELINE = PixArtPipeline
_VAE = {"alpha": "sd-vae-ft-ema", "sigma": "SDXL VAE"}


def _row(name, variant, side, repo, original, what):
    return ModelEntry(name, FAMILY, f"PixArt-{'α' if variant == 'alpha' else 'Σ'} {what} (0.6B) + T5-XXL "
                      f"({CAPTION_TOKENS[variant]} tokens) + {_VAE[variant]}", side, repo, original, variant)


MODELS = (
    _row("pixart-alpha-512", "alpha", 512, "PixArt-alpha/PixArt-XL-2-512x512", "PixArt-XL-2-512x512.pth", "512x512"),
    _row("pixart-alpha-1024", "alpha", 1024, "PixArt-alpha/PixArt-XL-2-1024-MS", "PixArt-XL-2-1024-MS.pth",
         "1024 multi-aspect, size/aspect micro-conditions"),
    _row("pixart-sigma-256", "sigma", 256, "PixArt-alpha/PixArt-Sigma-XL-2-256x256", "PixArt-Sigma-XL-2-256x256.pth",
         "256x256"),
    _row("pixart-sigma-512", "sigma", 512, "PixArt-alpha/PixArt-Sigma-XL-2-512-MS", "PixArt-Sigma-XL-2-512-MS.pth",
         "512 multi-aspect"),
    _row("pixart-sigma-1024", "sigma", 1024, "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
         "PixArt-Sigma-XL-2-1024-MS.pth", "1024 multi-aspect"),
    _row("pixart-sigma-2k", "sigma", 2048, "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS", "PixArt-Sigma-XL-2-2K-MS.pth",
         "2048 multi-aspect (tiled decode)"),
)


def add_arguments(group) -> None:
    """PixArt has no options of its own: --prompt, --negative-prompt, --height, --width are cli.py's."""


def defaults(entry: ModelEntry) -> dict:
    return signature_defaults(PIPELINE)


# the T5 and VAE folders an original .pth is used with (the layout of the official repositories)
ORIGINAL_COMPANIONS = {"alpha": ("t5-v1_1-xxl", "sd-vae-ft-ema"), "sigma": ("text_encoder", "vae")}


def how_to_get(entry: ModelEntry) -> str:
    model, variant, repo, pth = entry.name, entry.variant, entry.repo, entry.original
    local = repo.split("/")[1]
    if variant == "alpha":
        original = (f"  huggingface-cli download PixArt-alpha/PixArt-alpha --include {pth} \"t5-v1_1-xxl/*\" "
                    f"\"sd-vae-ft-ema/*\" --local-dir pixart-alpha\n"
                    f"  python -m minidit generate --model {model} --weights pixart-alpha --prompt \"...\"")
    else:
        original = (f"  huggingface-cli download PixArt-alpha/PixArt-Sigma {pth} --local-dir pixart-sigma\n"
                    f"  huggingface-cli download PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers --include "
                    f"\"text_encoder/*\" \"tokenizer/*\" \"vae/*\" --local-dir pixart-sigma\n"
                    f"  python -m minidit generate --model {model} --weights pixart-sigma --prompt \"...\"")
    rest = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers" if variant == "sigma" else "PixArt-alpha/PixArt-XL-2-1024-MS"
    return (f"Get the {model} weights (T5-XXL included: 10-19 GB) with\n"
            f"  huggingface-cli download {repo} --local-dir {local}\n"
            + (f"  (if {local}/ then lacks text_encoder/ or vae/: huggingface-cli download {rest} --include "
               f"model_index.json \"scheduler/*\" \"text_encoder/*\" \"tokenizer/*\" \"vae/*\" --local-dir {local})\n"
               if rest != repo else "") +
            f"  python -m minidit generate --model {model} --weights {local} --prompt \"...\"\n"
            f"or the original checkpoint with the T5 and VAE it was sampled with, in one folder:\n{original}")


def _load_for_cli(entry: ModelEntry, weights: Path, dtype, device) -> PixArtPipeline:
    variant, pth = entry.variant, entry.original
    if (weights / "model_index.json").is_file():
        return PixArtPipeline.from_pretrained(weights, dtype=dtype, device=device)
    checkpoint = weights if weights.is_file() else weights / pth
    t5, vae = (checkpoint.parent / name for name in ORIGINAL_COMPANIONS[variant])
    missing = [str(p) for p in (checkpoint, t5 / "config.json", vae / "config.json") if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{weights}: neither a diffusers PixArt folder (model_index.json) nor an original "
                                f"checkpoint with its T5 and VAE folders (missing: {', '.join(missing)})")
    tokenizer = checkpoint.parent / "tokenizer" if (checkpoint.parent / "tokenizer").is_dir() else None
    return PixArtPipeline.from_original(checkpoint, t5, vae, tokenizer=tokenizer, dtype=dtype, device=device)


def generate(args, entry: ModelEntry, call_kwargs: dict) -> int:
    """Run `generate` for a PixArt row whose --weights exist; `call_kwargs` holds the pipeline
    arguments given on the command line."""
    problem = text_arguments_error(args, "PixArt")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    device = default_device(args.device)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    try:
        pipe = _load_for_cli(entry, Path(args.weights), dtype, device)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    found = (pipe.variant, pipe.transformer.config.input_size * pipe.vae.config.downsample_factor)
    if found != (entry.variant, entry.side):
        print(f"these are PixArt-{found[0]} {found[1]}px weights, not {entry.name}.\n{how_to_get(entry)}",
              file=sys.stderr)
        return 2
    return run_text_to_image(pipe, args, call_kwargs)
