"""Train or fine-tune a DiT-family model with minidit's loop (`minidit/training/`), on one or many processes.

    python scripts/train.py --data digits --steps 2000 --lr 1e-3 --warmup 100 --out runs/digits
    torchrun --nproc_per_node 4 scripts/train.py --data digits --batch-size 32 --out runs/digits4
    python scripts/train.py --data my_images/ --weights PixArt-Sigma-XL-2-512-MS --side 512 \\
        --batch-size 1 --grad-accum 8 --lr 5e-5 --lr-group y_embedder.=1e-4 --checkpointing --precision bf16

Data: `digits` (scikit-learn's digits, a class-conditional DiT: the toy's size unless --hidden-size,
--depth, --heads say otherwise, or --init a DiT .pt to start from), or a folder of images with
same-named .txt captions (a PixArt, from --weights: a diffusers PixArt pipeline folder with
transformer/, text_encoder/, tokenizer/, vae/). Captions are encoded by T5 once, into --text-cache,
and T5 is freed before training; images go to the nearest of PixArt's aspect-ratio buckets at --side.

Under torchrun every process runs this script; --batch-size is per process, so the global batch is
batch-size x grad-accum x processes (one process with that batch trains the same run). Outputs in
--out: checkpoint-NNNNNNN.pt (resume with --resume), ema.pt / ema.pth (the EMA weights in the
official layout: `weights_loader.load_dit` / `load_pixart` read them), log.json (the loss per step);
with --lora-rank, lora.safetensors instead: the EMA of the adapters only (`minidit.lora.load_lora`).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from minidit.dit import DiT                                    # noqa: E402
from minidit.errors import InputError                          # noqa: E402
from minidit.flow import TRAINING_DENSITIES                    # noqa: E402
from minidit.pipelines.toy import BETA_SCHEDULE, TOY           # noqa: E402
from minidit.training import (DigitsData, ImageCaptionFolder, TextEmbeddingCache, TrainConfig,  # noqa: E402
                              make_objective, prepare_pixart, train)
from minidit.training import distributed as D                  # noqa: E402
from minidit.training.checkpointing import PRECISIONS          # noqa: E402
from minidit.training.objectives import OBJECTIVES             # noqa: E402
from weights_loader import load_dit, load_pixart, load_t5, load_t5_tokenizer, load_vae  # noqa: E402
from minidit.lora import add_lora                              # noqa: E402
from minidit.plan_train import FUSED, LORA_TARGETS             # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits", help="'digits' or a folder of images + .txt captions")
    p.add_argument("--objective", choices=OBJECTIVES, default="epsilon")
    p.add_argument("--density", choices=TRAINING_DENSITIES, default="logit_normal", help="flow: how sigma is drawn")
    p.add_argument("--beta-schedule", default=None, help="DDPM betas (default: the toy's cosine for digits, linear else)")
    g = p.add_argument_group("model")
    g.add_argument("--init", help="digits: a DiT .pt to start from (weights_loader.load_dit)")
    g.add_argument("--hidden-size", type=int, default=TOY.hidden_size)
    g.add_argument("--depth", type=int, default=TOY.depth)
    g.add_argument("--heads", type=int, default=TOY.num_heads)
    g.add_argument("--weights", help="folder data: a diffusers PixArt pipeline folder")
    g.add_argument("--side", type=int, default=512, help="folder data: the bucket table's side (256/512/1024/2048)")
    g = p.add_argument_group("LoRA: train low-rank adapters only (minidit.lora), the model frozen")
    g.add_argument("--lora-rank", type=int, default=0, help="the adapters' rank (0: no LoRA, train the model)")
    g.add_argument("--lora-alpha", type=float, default=None, help="(default: the rank, scale 1)")
    g.add_argument("--lora-targets", default="attention",
                   help="attention | attention+mlp (the planner's sets, minidit.plan_train.LORA_TARGETS) or a regex")
    g.add_argument("--lora-split", action="store_true",
                   help="one adapter per q, k, v (as diffusers / PEFT store them) instead of one on the fused layer")
    g.add_argument("--text-cache", default=None, help="folder of cached T5 states (default: OUT/text_cache)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--batch-size", type=int, default=16, help="per process and micro-batch")
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--lr-group", action="append", default=[], metavar="PREFIX=LR",
                   help="another rate for parameters whose name starts with PREFIX (repeatable)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--warmup", type=int, default=0)
    g.add_argument("--min-lr-ratio", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--ema", type=float, default=0.9999)
    g.add_argument("--ema-warmup", action="store_true")
    g.add_argument("--p-uncond", type=float, default=0.1)
    g = p.add_argument_group("memory and processes")
    g.add_argument("--checkpointing", action="store_true", help="gradient checkpointing per block")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32")
    g.add_argument("--distributed", choices=D.MODES, default="ddp", help="under torchrun")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--save-every", type=int, default=0)
    g.add_argument("--out", default="runs/train")
    g.add_argument("--resume", default=None)
    g.add_argument("--no-export", action="store_true", help="no ema.pt / ema.pth at the end")
    g.add_argument("--export-diffusers", action="store_true", help="also OUT/ema_diffusers/, a diffusers transformer folder")
    return p


def lr_groups(items) -> dict:
    out = {}
    for item in items:
        prefix, sep, value = item.partition("=")
        try:
            out[prefix] = float(value)
        except ValueError:
            sep = ""
        if not sep or not prefix:
            raise InputError(f"--lr-group {item!r}: write PREFIX=LR, e.g. y_embedder.=1e-4")
    return out


def digits_setup(args):
    config = replace(TOY, hidden_size=args.hidden_size, depth=args.depth, num_heads=args.heads,
                     learn_sigma=args.objective != "flow")
    if args.init:
        model = load_dit(args.init, config).train()
    else:
        torch.manual_seed(args.seed)
        model = DiT(config)
    return model, DigitsData(), args.beta_schedule or BETA_SCHEDULE


def folder_setup(args):
    if not args.weights:
        raise InputError("a folder of images trains a PixArt: pass --weights <diffusers PixArt pipeline folder>")
    model = prepare_pixart(load_pixart(args.weights).train())
    L = model.config.model_max_length
    tokenizer, encoder = load_t5_tokenizer(args.weights), {"t5": load_t5(args.weights, dtype=torch.bfloat16)}

    def encode(texts):                                           # as PixArtPipeline._t5
        tokens = tokenizer([t.lower().strip() for t in texts], max_length=L)
        states = encoder["t5"](tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return states.float(), tokens["attention_mask"]
    cache = TextEmbeddingCache(args.text_cache or Path(args.out) / "text_cache", encode, f"{args.weights}|T5|{L}")
    data = ImageCaptionFolder(args.data, args.side, cache, vae=load_vae(args.weights).eval())
    data.precompute_text()
    if not model.y_embedder.has_null_caption:                    # diffusers folders do not store it: T5("")
        states, _ = cache.get([""])
        model.y_embedder.y_embedding.copy_(states[0])
        model.y_embedder.has_null_caption = True
    encoder.clear()                                              # T5 freed: every caption is on disk now
    return model, data, args.beta_schedule or "linear"


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = D.setup(args.device)
    try:
        model, data, betas = digits_setup(args) if args.data == "digits" else folder_setup(args)
        if args.lora_rank:
            targets = list(LORA_TARGETS.get(args.lora_targets, ())) or args.lora_targets
            add_lora(model, targets, args.lora_rank, args.lora_alpha, split=FUSED if args.lora_split else None)
        objective = make_objective(args.objective, learn_sigma=args.objective != "flow" and
                                   getattr(model.config, "learn_sigma", getattr(model.config, "pred_sigma", True)),
                                   beta_schedule=betas, density=args.density)
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                          lr_by_prefix=lr_groups(args.lr_group), weight_decay=args.weight_decay, warmup=args.warmup,
                          min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip or None, ema_decay=args.ema,
                          ema_warmup=args.ema_warmup, p_uncond=args.p_uncond, objective=args.objective,
                          checkpointing=args.checkpointing, precision=args.precision, distributed=args.distributed,
                          seed=args.seed, log_every=args.log_every, save_every=args.save_every, out=args.out,
                          resume=args.resume, export=not args.no_export,
                          export_diffusers=args.export_diffusers)
        if world.main:
            n = sum(p.numel() for p in model.parameters())
            print(f"{type(model).__name__} {n / 1e6:.2f} M parameters, {len(data)} items, {world.world_size} "
                  f"process(es), global batch {args.batch_size * args.grad_accum * world.world_size}", flush=True)
        return train(cfg, model, data, objective, world)
    finally:
        D.teardown(world)


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
