"""`python -m minidit generate --model hunyuan-dit-v1.2 --weights DIR --prompt "一只可爱的猫"`: Hunyuan-DiT's command line.

`minidit/cli.py` builds the parser from the model table; this module gives Hunyuan-DiT's rows
(`MODELS`), its option (`--sampler`), its defaults (the official ones: 100 DDPM steps and CFG 6.0; 25
steps for v1.2-Distilled, the README's example for those weights; the Chinese negative prompt) and its
run function. --weights is a diffusers download or the original repository's `ckpts/` (with t2i/);
both sample the official way. The shared options are checked first (`cli.check_generate_arguments`),
then --prompt / --class and the sizes (at least 16), all before any weight is read; a wrong or
missing folder prints the error and the download commands (exit status 2).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from weights_loader.errors import CheckpointError
from .common import ModelEntry, default_device, hub_download, run_text_to_image, text_arguments_error
from .hunyuan import ALIGN, HunyuanPipeline, official_sampling

FAMILY = "hunyuan"
TITLE = "Hunyuan-DiT (bilingual text-to-image, v-prediction)"
PIPELINE = HunyuanPipeline
_STACK = "(1.5B) + BERT-CLIP (zh/en) + mT5-XL + SDXL VAE"
MODELS = (
    ModelEntry("hunyuan-dit-v1.2", FAMILY, f"Hunyuan-DiT v1.2 DiT-g/2 {_STACK}", 1024,
               "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers", "t2i/model/pytorch_model_ema.pt"),
    ModelEntry("hunyuan-dit-v1.2-distilled", FAMILY, f"Hunyuan-DiT v1.2-Distilled (fewer steps) {_STACK}", 1024,
               "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers-Distilled", "t2i/model/pytorch_model_distill.pt"),
    ModelEntry("hunyuan-dit-v1.1", FAMILY, f"Hunyuan-DiT v1.1 DiT-g/2, size+style conditions {_STACK}", 1024,
               "Tencent-Hunyuan/HunyuanDiT-Diffusers", "t2i/model/pytorch_model_ema.pt"),
)
# the original repository of each row (its t2i/ folder), and where the distilled weights come from
ORIGINAL_REPOS = {"hunyuan-dit-v1.2": "Tencent-Hunyuan/HunyuanDiT-v1.2",
                  "hunyuan-dit-v1.2-distilled": "Tencent-Hunyuan/HunyuanDiT-v1.2",
                  "hunyuan-dit-v1.1": "Tencent-Hunyuan/HunyuanDiT-v1.1"}
DISTILL_REPO = "Tencent-Hunyuan/Distillation-v1.2"


def _official(entry: ModelEntry, sampler: str = "ddpm"):
    return official_sampling(entry.name == "hunyuan-dit-v1.1", sampler, distilled="distilled" in entry.name)


def defaults(entry: ModelEntry) -> dict:
    s = _official(entry)
    return {"steps": s.steps, "guidance": s.guidance}


def add_arguments(group) -> None:
    group.add_argument("--sampler", choices=["ddpm", "ddim", "dpmms"], default="ddpm",
                       help="Hunyuan-DiT's official samplers: DDPM, DDIM, DPM-Solver++(2M) (default: %(default)s)")


def how_to_get(entry: ModelEntry) -> str:
    local = entry.repo.split("/")[1]
    original = f"  huggingface-cli download {ORIGINAL_REPOS[entry.name]} --local-dir ckpts\n"
    if "distilled" in entry.name:
        original += f"  huggingface-cli download {DISTILL_REPO} pytorch_model_distill.pt --local-dir ckpts/t2i/model\n"
    return (f"Get the {entry.name} weights (about 16 GB with mT5-XL) with\n"
            f"  {hub_download(entry)}\n"
            f"  python -m minidit generate --model {entry.name} --weights {local} --prompt \"一只可爱的猫\"\n"
            f"or the original repository layout (ckpts/t2i/: {entry.original}, clip_text_encoder/, tokenizer/, mt5/, "
            f"sdxl-vae-fp16-fix/):\n{original}"
            f"  python -m minidit generate --model {entry.name} --weights ckpts --prompt \"一只可爱的猫\"")


def _load(entry: ModelEntry, weights: Path, dtype, device, sampler: str) -> HunyuanPipeline:
    load_key = "distill" if "distilled" in entry.name else "ema"
    if not (weights / "model_index.json").is_file() and not (weights / "model").is_dir() \
            and not (weights / "t2i" / "model").is_dir():
        raise FileNotFoundError(f"{weights}: neither a diffusers Hunyuan-DiT folder (model_index.json) nor the original "
                                "layout (t2i/model/ with clip_text_encoder/, tokenizer/, mt5/, sdxl-vae-fp16-fix/)")
    return HunyuanPipeline.from_pretrained(weights, sampling=_official(entry, sampler), load_key=load_key,
                                           dtype=dtype, device=device)


def generate(args, entry: ModelEntry, call_kwargs: dict) -> int:
    """Run `generate` for a Hunyuan-DiT row whose --weights exist; `call_kwargs` holds the pipeline
    arguments given on the command line."""
    problem = text_arguments_error(args, "Hunyuan-DiT")
    sizes = [f"--{o} {getattr(args, o)}" for o in ("height", "width") if getattr(args, o) is not None
             and getattr(args, o) < ALIGN]
    if sizes and not problem:   # before loading (check_generate_arguments has refused sizes below 1)
        problem = (f"{', '.join(sizes)}: Hunyuan-DiT sizes are at least {ALIGN} (floored to multiples of {ALIGN}: VAE "
                   "factor 8 x patch 2), e.g. 1024")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    device = default_device(args.device)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    try:
        pipe = _load(entry, Path(args.weights), dtype, device, args.sampler)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    found = "v1.0/v1.1" if pipe.transformer.config.size_cond else "v1.2"
    if (found == "v1.2") != (entry.name != "hunyuan-dit-v1.1"):
        print(f"these are Hunyuan-DiT {found} weights, not {entry.name}.\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    return run_text_to_image(pipe, args, call_kwargs)
