"""`python -m minidit generate --model dit-xl-2-256 --weights DIR --class 207`: the DiT command line
(`minidit/cli.py` parses the arguments; the pipeline is `minidit/pipelines/dit.py`).

A wrong or missing folder prints the exact download commands (`how_to_get`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from .dit import DiTPipeline, class_ids


def how_to_get(model: str) -> str:
    side = 256 if model.endswith("256") else 512
    return (f"Get the {model} weights with one of:\n"
            f"  huggingface-cli download facebook/DiT-XL-2-{side} --local-dir DiT-XL-2-{side}\n"
            f"  python -m minidit generate --model {model} --weights DiT-XL-2-{side} --class 207\n"
            f"or the original checkpoint and the VAE it was sampled with, in one folder:\n"
            f"  mkdir DiT && cd DiT && wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-{side}x{side}.pt\n"
            f"  huggingface-cli download stabilityai/sd-vae-ft-mse --local-dir sd-vae-ft-mse && cd ..\n"
            f"  python -m minidit generate --model {model} --weights DiT --class 207")


def _load_for_cli(weights: Path, side: int, dtype, device) -> DiTPipeline:
    if (weights / "model_index.json").is_file():
        return DiTPipeline.from_pretrained(weights, dtype=dtype, device=device)
    pt = weights if weights.is_file() else weights / f"DiT-XL-2-{side}x{side}.pt"
    vaes = [pt.parent / name for name in ("sd-vae-ft-mse", "sd-vae-ft-ema", "vae")]
    vae = next((v for v in vaes if (v / "config.json").is_file()), None)
    if not pt.is_file() or vae is None:
        raise FileNotFoundError(f"{weights}: found neither a diffusers DiT folder (model_index.json) nor "
                                f"{pt.name} with a VAE folder ({', '.join(v.name for v in vaes)}) beside it")
    return DiTPipeline.from_original(pt, vae, dtype=dtype, device=device)


def cli_generate(args) -> int:
    from weights_loader.io import CheckpointError
    side = 256 if args.model.endswith("256") else 512
    if args.prompt:
        print("DiT is class-conditional: pass --class (ImageNet ids or names), not --prompt", file=sys.stderr)
        return 2
    if args.weights is None or not Path(args.weights).exists():
        missing = "no --weights given" if args.weights is None else f"{args.weights} does not exist"
        print(f"{missing}.\n{how_to_get(args.model)}", file=sys.stderr)
        return 2
    if (args.height or side) != side or (args.width or side) != side:
        print(f"{args.model} makes {side}x{side} images only (drop --height/--width)", file=sys.stderr)
        return 2
    if not args.class_labels:
        print("pass --class, e.g. --class 207 or --class 'golden retriever' (comma-separated for several)",
              file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype or "float32")
    try:
        pipe = _load_for_cli(Path(args.weights), side, dtype, device)
        labels = class_ids([c for c in args.class_labels.split(",") if c.strip()], pipe.transformer.config.num_classes)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(args.model)}", file=sys.stderr)
        return 2
    if pipe.transformer.config.input_size * 8 != side:
        print(f"these are {pipe.transformer.config.input_size * 8}px weights, not {args.model}.\n"
              f"{how_to_get(args.model)}", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(args.seed)
    images = pipe(labels, num_inference_steps=args.steps or 250,
                  guidance_scale=4.0 if args.guidance is None else args.guidance, generator=generator)
    out = Path(args.out)
    paths = [out] if len(images) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(images))]
    for image, path in zip(images, paths):
        image.save(path)
        print(f"wrote {path}")
    return 0
