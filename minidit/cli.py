"""`python -m minidit ...` — the command line.

    python -m minidit sample                      the built-in digits model, no download needed
    python -m minidit generate --model NAME ...   an official checkpoint you downloaded
    python -m minidit models                      what `generate` can run and how to get the weights
"""
from __future__ import annotations

import argparse
import sys

# name -> (what it is, the command that downloads the weights)
MODELS: dict[str, tuple[str, str]] = {
    "dit-xl-2-256": ("DiT-XL/2, class-conditional ImageNet 256x256 (675M) + its SD VAE",
                     "huggingface-cli download facebook/DiT-XL-2-256 --local-dir DiT-XL-2-256  "
                     "(or: wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt and "
                     "huggingface-cli download stabilityai/sd-vae-ft-mse --local-dir sd-vae-ft-mse, in one folder)"),
    "dit-xl-2-512": ("DiT-XL/2, class-conditional ImageNet 512x512 (675M) + its SD VAE",
                     "huggingface-cli download facebook/DiT-XL-2-512 --local-dir DiT-XL-2-512  "
                     "(or: wget https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt and "
                     "huggingface-cli download stabilityai/sd-vae-ft-mse --local-dir sd-vae-ft-mse, in one folder)"),
    "pixart-alpha-512": ("PixArt-α 512x512 (0.6B) + T5-XXL (120 tokens) + sd-vae-ft-ema, text-to-image",
                         "huggingface-cli download PixArt-alpha/PixArt-XL-2-512x512 --local-dir PixArt-XL-2-512x512"),
    "pixart-alpha-1024": ("PixArt-α 1024 multi-aspect (0.6B, size/aspect micro-conditions) + T5-XXL (120) + "
                          "sd-vae-ft-ema",
                          "huggingface-cli download PixArt-alpha/PixArt-XL-2-1024-MS --local-dir PixArt-XL-2-1024-MS"),
    "pixart-sigma-256": ("PixArt-Σ 256x256 (0.6B) + T5-XXL (300 tokens) + SDXL VAE",
                         "huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-256x256 "
                         "--local-dir PixArt-Sigma-XL-2-256x256"),
    "pixart-sigma-512": ("PixArt-Σ 512 multi-aspect (0.6B) + T5-XXL (300 tokens) + SDXL VAE",
                         "huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-512-MS "
                         "--local-dir PixArt-Sigma-XL-2-512-MS"),
    "pixart-sigma-1024": ("PixArt-Σ 1024 multi-aspect (0.6B) + T5-XXL (300 tokens) + SDXL VAE",
                          "huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-1024-MS "
                          "--local-dir PixArt-Sigma-XL-2-1024-MS"),
    "pixart-sigma-2k": ("PixArt-Σ 2048 multi-aspect (0.6B) + T5-XXL (300 tokens) + SDXL VAE (tiled decode)",
                        "huggingface-cli download PixArt-alpha/PixArt-Sigma-XL-2-2K-MS "
                        "--local-dir PixArt-Sigma-XL-2-2K-MS"),
}


def _sample(args) -> int:
    from .toy import main as toy_main
    return toy_main(args)


def _generate(args) -> int:
    if args.model not in MODELS:
        print(f"unknown model {args.model!r}. Choose one of: {', '.join(sorted(MODELS)) or '(none yet)'}",
              file=sys.stderr)
        return 2
    if args.model.startswith("dit-"):
        from .pipelines.dit_cli import cli_generate
    else:
        from .pipelines.pixart_cli import cli_generate
    return cli_generate(args)


def _models(args) -> int:
    for name, (what, download) in sorted(MODELS.items()):
        print(f"{name:24s} {what}\n{'':24s} get it: {download}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minidit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="sample digits from the built-in toy DiT (no download)")
    p.add_argument("--classes", type=str, default="0,1,2,3,4,5,6,7,8,9",
                   help="comma-separated digits, one grid column each (default: all ten)")
    p.add_argument("--count", type=int, default=4, help="samples per digit (grid rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--out", type=str, default="digits.png", help="output PNG path")
    p.set_defaults(func=_sample)

    p = sub.add_parser("generate", help="generate with an official checkpoint")
    p.add_argument("--model", required=True, help="see `python -m minidit models`")
    p.add_argument("--weights", type=str, default=None, help="folder or file with the downloaded weights")
    p.add_argument("--prompt", type=str, default=None)
    p.add_argument("--negative-prompt", type=str, default="")
    p.add_argument("--class", dest="class_labels", type=str, default=None,
                   help="ImageNet class id(s) or name(s), comma-separated (class-conditional models)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=str, default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--dtype", type=str, default=None, choices=["float32", "bfloat16", "float16"],
                   help="the transformer's dtype (default: float16 on CUDA for PixArt, else float32)")
    p.add_argument("--out", type=str, default="out.png")
    p.set_defaults(func=_generate)

    p = sub.add_parser("models", help="list the models `generate` knows and how to download them")
    p.set_defaults(func=_models)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
