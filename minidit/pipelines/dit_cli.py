"""`python -m minidit generate --model dit-xl-2-256 --weights DIR --class 207`: DiT's command line.

`minidit/cli.py` builds the parser from the model table; this module gives DiT's rows (`MODELS`),
its options (`add_arguments`) and its run function (`generate`). Step count and guidance default to
`DiTPipeline.__call__`'s own. A wrong or missing folder prints the exact download commands.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from minidit.errors import InputError
from weights_loader.errors import CheckpointError
from .common import ModelEntry, default_device, hub_download, signature_defaults
from .dit import DiTPipeline, class_ids

FAMILY = "dit"
TITLE = "DiT (class-conditional ImageNet)"
PIPELINE = DiTPipeline
MODELS = tuple(
    ModelEntry(f"dit-xl-2-{side}", FAMILY, f"DiT-XL/2, class-conditional ImageNet {side}x{side} (675M) + its SD VAE",
               side, f"facebook/DiT-XL-2-{side}", f"DiT-XL-2-{side}x{side}.pt")
    for side in (256, 512))


def add_arguments(group) -> None:
    group.add_argument("--class", dest="class_labels", type=str, default=None,
                       help="ImageNet class id(s) or name(s), comma-separated, e.g. 207 or 'golden retriever'")


def defaults(entry: ModelEntry) -> dict:
    return signature_defaults(PIPELINE)


def how_to_get(entry: ModelEntry) -> str:
    local = entry.repo.split("/")[1]
    return (f"Get the {entry.name} weights with one of:\n"
            f"  {hub_download(entry)}\n"
            f"  python -m minidit generate --model {entry.name} --weights {local} --class 207\n"
            f"or the original checkpoint and the VAE it was sampled with, in one folder:\n"
            f"  mkdir DiT && cd DiT && wget https://dl.fbaipublicfiles.com/DiT/models/{entry.original}\n"
            f"  huggingface-cli download stabilityai/sd-vae-ft-mse --local-dir sd-vae-ft-mse && cd ..\n"
            f"  python -m minidit generate --model {entry.name} --weights DiT --class 207")


def _load(entry: ModelEntry, weights: Path, dtype, device) -> DiTPipeline:
    if (weights / "model_index.json").is_file():
        return DiTPipeline.from_pretrained(weights, dtype=dtype, device=device)
    pt = weights if weights.is_file() else weights / entry.original
    vaes = [pt.parent / name for name in ("sd-vae-ft-mse", "sd-vae-ft-ema", "vae")]
    vae = next((v for v in vaes if (v / "config.json").is_file()), None)
    if not pt.is_file() or vae is None:
        raise FileNotFoundError(f"{weights}: found neither a diffusers DiT folder (model_index.json) nor "
                                f"{pt.name} with a VAE folder ({', '.join(v.name for v in vaes)}) beside it")
    return DiTPipeline.from_original(pt, vae, dtype=dtype, device=device)


def generate(args, entry: ModelEntry, call_kwargs: dict) -> int:
    """Run `generate` for a DiT row whose --weights exist; `call_kwargs` holds the pipeline arguments
    given on the command line."""
    if args.prompt:
        print("DiT is class-conditional: pass --class (ImageNet ids or names), not --prompt", file=sys.stderr)
        return 2
    if any(v is not None and v != entry.side for v in (args.height, args.width)):
        print(f"{entry.name} makes {entry.side}x{entry.side} images only (drop --height/--width)", file=sys.stderr)
        return 2
    if not args.class_labels:
        print("pass --class, e.g. --class 207 or --class 'golden retriever' (comma-separated for several)",
              file=sys.stderr)
        return 2
    names = [c for c in args.class_labels.split(",") if c.strip()]
    try:                        # the classes before the weights: every DiT release has ImageNet's 1000
        labels = class_ids(names, 1000)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = default_device(args.device)
    dtype = torch.float32 if args.dtype is None else getattr(torch, args.dtype)
    try:
        pipe = _load(entry, Path(args.weights), dtype, device)
        labels = class_ids(names, pipe.transformer.config.num_classes)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    if pipe.transformer.config.input_size * 8 != entry.side:
        print(f"these are {pipe.transformer.config.input_size * 8}px weights, not {entry.name}.\n{how_to_get(entry)}",
              file=sys.stderr)
        return 2
    images = pipe(labels, generator=torch.Generator().manual_seed(args.seed), **call_kwargs)
    out = Path(args.out)
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(images))]
    for image, path in zip(images, paths):
        image.save(path)
        print(f"wrote {path}")
    return 0
