"""`python -m minidit ...` — the command line.

    python -m minidit sample                      the built-in digits model, no download needed
    python -m minidit sample-video                the built-in video model: a digit moving, as a GIF
    python -m minidit generate --prompt "a red 3 left of a blue 7"   the built-in text-to-image model
    python -m minidit generate --model NAME ...   an official checkpoint you downloaded
    python -m minidit models                      what `generate` can run and how to get the weights
    python -m minidit plan --model NAME ...       memory and FLOPs per stage, and the settings that fit a card
    python -m minidit plan --model NAME --train lora|full [--checkpointing]   the memory of a training step

Everything `generate` knows comes from one model table, `MODELS`, whose rows each family's
command-line module gives (`pipelines/dit_cli.py`, `pixart_cli.py`, `sd3_cli.py`, `hunyuan_cli.py`): the name, the
family, how to get the weights, and the family's options and run function. Default steps and
guidance are the pipelines' own keyword defaults (`call_defaults`), never copied here.

Every option is checked before any weight is read (`pipelines/checks.py`: --out must name an image file
in a folder that exists, which is never created; --seed, --device, --steps, --guidance, sizes). A
refusal or a failed load prints `error: ...` (and, for a missing download, how to get it) with exit
status 2, never a traceback; `--debug` (before or after the command) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from weights_loader import CheckpointError
from . import plan_fit, plan_models, plan_train
from .errors import InputError, NonFiniteError
from .pipelines import dit_cli, hunyuan_cli, pixart_cli, sd3_cli, toy, toy_t2i, toy_video, video_cli
from .pipelines.checks import (check_device, check_guidance, check_int, check_output_path, check_seed,
                               check_steps)
from .pipelines.common import hub_download

FAMILIES = {module.FAMILY: module for module in (dit_cli, pixart_cli, sd3_cli, hunyuan_cli, video_cli)}
MODELS = {entry.name: entry for module in FAMILIES.values() for entry in module.MODELS}


def defaults(entry) -> dict:
    """{"steps", "guidance"} a model runs with when not given: its family's `defaults(entry)` (the
    pipeline's __call__ signature for DiT and PixArt, each release's official config for SD3)."""
    return FAMILIES[entry.family].defaults(entry)


def model_table() -> str:
    lines = [f"{'model':<26} {'steps':>5} {'guidance':>8}  what"]
    for name, entry in MODELS.items():
        d = defaults(entry)
        lines.append(f"{name:<26} {d['steps']:>5} {d['guidance']:>8}  {entry.summary}")
    return "\n".join(lines)


def check_generate_arguments(args) -> None:
    """The options every `generate` shares, refused (InputError) before any weight is read."""
    check_output_path(args.out)
    check_seed(args.seed)
    if args.steps is not None:
        check_steps(args.steps, "--steps")
    if args.guidance is not None:
        check_guidance(args.guidance, "--guidance")
    for option in ("height", "width", "window"):
        if getattr(args, option, None) is not None:
            check_int(getattr(args, option), f"--{option}", minimum=1)
    if getattr(args, "window_overlap", None) is not None:
        check_int(args.window_overlap, "--window-overlap", minimum=0)
    if args.device is not None:
        check_device(args.device)


BUILT_IN_OPTIONS = ("command", "func", "debug", "prompt", "steps", "guidance", "seed", "out")


def _generate(args) -> int:
    if args.model is None:           # the built-in text-to-image model: the real models' options are refused
        default = vars(build_parser().parse_args(["generate"]))
        given = sorted(f"--{k.replace('_', '-')}" for k, v in vars(args).items()
                       if k not in BUILT_IN_OPTIONS and v != default.get(k))
        if given:
            raise InputError(f"{', '.join(given)} belong to the downloaded models: add --model NAME "
                             "(`python -m minidit models`); the built-in text-to-image model (no --model) takes "
                             "--prompt, --steps, --guidance, --seed and --out")
        check_generate_arguments(args)
        return toy_t2i.cli_generate(args)
    entry = MODELS[args.model]
    family = FAMILIES[entry.family]
    check_generate_arguments(args)
    if hasattr(family, "check_arguments"):           # the family's own options, before any file is looked at
        family.check_arguments(args, entry)
    if args.weights is None or not Path(args.weights).exists():
        missing = "no --weights given" if args.weights is None else f"{args.weights} does not exist"
        print(f"{missing}.\n{family.how_to_get(entry)}", file=sys.stderr)
        return 2
    call_kwargs = {}
    if args.steps is not None:
        call_kwargs["num_inference_steps"] = args.steps
    if args.guidance is not None:
        call_kwargs["guidance_scale"] = args.guidance
    return family.generate(args, entry, call_kwargs)


def _models(args) -> int:
    for name, entry in MODELS.items():
        d = defaults(entry)
        get = [line.replace("DIR", name) for line in getattr(entry, "get", ())]    # several repositories (video rows)
        how = f"\n{'':28s}         ".join(get) if get else (
            hub_download(entry) + (f"  (or the original {entry.original})" if entry.original else ""))
        print(f"{name:28s} {entry.summary}\n{'':28s} defaults: {d['steps']} steps, guidance {d['guidance']}\n"
              f"{'':28s} get it: {how}")
    return 0


def _plan(args) -> int:
    """Refuse bad input before counting anything (InputError: `error: ...`, exit 2), then print the plan."""
    plan_fit.check_arguments(args.model, MODELS, args.height, args.width, args.gpu_memory, args.steps, args.kv_compress)
    stack = plan_models.stack(MODELS[args.model])
    height = stack.side if args.height is None else args.height
    width = stack.side if args.width is None else args.width
    if args.train:                                         # one training step instead of a sampling run
        check_int(args.batch, "--batch", minimum=1)
        print(plan_train.report(stack, height, width, train=args.train, rank=args.lora_rank, targets=args.lora_targets,
                                checkpointing=args.checkpointing, batch=args.batch, dtype="bf16" if args.dtype is None else args.dtype,
                                optimizer=args.optimizer, gpu_memory=args.gpu_memory))
        return 0
    memory = plan_fit.GPUS[args.gpu][4] if args.gpu_memory is None else args.gpu_memory
    window = None if args.window is None else plan_fit.window_latent(args.window)
    d = defaults(MODELS[args.model])                       # the model's own steps and guidance unless given
    steps = d["steps"] if args.steps is None else args.steps
    guided = d["guidance"] > 1 if args.guidance is None else args.guidance
    print(plan_fit.report(stack, height, width, memory, dtype=args.dtype, steps=steps, guided=guided,
                          backend=args.attention, kv_scale=args.kv_compress, gpu=args.gpu, window=window))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minidit", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="sample digits from the built-in toy DiT (no download)",
                       description="Digits from the built-in toy DiT (trained on scikit-learn's 8x8 digits).")
    toy.add_sample_arguments(p)
    p.set_defaults(func=toy.cli_sample)

    p = sub.add_parser("sample-video", help="a moving digit from the built-in video toy (no download)",
                       description="An animated GIF of a digit moving right, left, down or up, from the built-in "
                                   "spacetime DiT (trained on scikit-learn's 8x8 digits moving on a 16x16 canvas).")
    toy_video.add_sample_video_arguments(p)
    p.set_defaults(func=toy_video.cli_sample_video)

    p = sub.add_parser("generate", help="generate with an official checkpoint, or the built-in text-to-image model",
                       description="Generate with an official checkpoint you downloaded (--model NAME --weights ...), "
                                   "or, without --model, with the built-in text-to-image model (offline, seconds: "
                                   "captions of the toy world, e.g. --prompt 'a red 3 left of a blue 7'). Models "
                                   "(defaults from each pipeline):\n\n" + model_table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, choices=list(MODELS), metavar="NAME",
                   help="one of: " + ", ".join(MODELS) + " (see `python -m minidit models`); "
                        "none: the built-in text-to-image model")
    p.add_argument("--weights", type=str, default=None, help="folder or file with the downloaded weights")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, in the table above)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's, in the table above)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--device", type=str, default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--dtype", type=str, default=None, choices=["float32", "bfloat16", "float16"],
                   help="the transformer's dtype (default: float16 on CUDA for PixArt, else float32)")
    p.add_argument("--out", type=str, default="out.png", help="(default: %(default)s)")
    text = p.add_argument_group("text-to-image models (PixArt, SD3, Hunyuan-DiT)")
    text.add_argument("--prompt", type=str, default=None, help="what to draw")
    text.add_argument("--negative-prompt", type=str, default=None,
                      help="what to steer away from (default: none; Hunyuan-DiT: the official Chinese one)")
    text.add_argument("--height", type=int, default=None, help="pixels (default: the model's; PixArt snaps it to "
                      "the nearest aspect-ratio bucket and resizes back)")
    text.add_argument("--width", type=int, default=None, help="pixels (default: the model's)")
    text.add_argument("--window", type=int, default=None,
                      help="sliding-window denoising (MultiDiffusion): run the transformer on overlapping windows of "
                           "this many pixels (e.g. the model's own side) to make a larger image; no binning then")
    text.add_argument("--window-overlap", type=int, default=None,
                      help="pixels two neighbouring windows share (default: a quarter of the window)")
    for family, module in FAMILIES.items():
        names = ", ".join(e.name for e in module.MODELS)
        module.add_arguments(p.add_argument_group(f"{module.TITLE}: {names}"))
    p.set_defaults(func=_generate)

    p = sub.add_parser("models", help="list the models `generate` knows and how to download them")
    p.set_defaults(func=_models)

    p = sub.add_parser("plan", help="predict memory and FLOPs per stage, and the settings that fit a card",
                       description="Per-stage peak memory (weights + activations) and FLOPs of one run, the FLOP "
                                   "floor on a named card, and the cheapest settings that fit in --gpu-memory. "
                                   "Nothing is loaded: weights and FLOPs are counted on the meta device.")
    p.add_argument("--model", required=True, metavar="NAME", help="one of: " + ", ".join(MODELS))
    p.add_argument("--height", type=int, default=None, help="pixels (default: the model's training size)")
    p.add_argument("--width", type=int, default=None, help="pixels (default: the model's training size)")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                   help="the card's memory in GiB (default: the --gpu card's)")
    p.add_argument("--gpu", choices=list(plan_fit.GPUS), default="a100", help="the card for the FLOP floor (default: %(default)s)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                   help="fix the denoiser's dtype (default: the cheapest that fits)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's, `models`)")
    p.add_argument("--guidance", action=argparse.BooleanOptionalAction, default=None,
                   help="classifier-free guidance: batch 2 per forward (default: on if the model's guidance is > 1)")
    p.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa",
                   help="SDPA (fused, O(N) memory) or the manual path (materialised scores) (default: %(default)s)")
    p.add_argument("--kv-compress", type=int, default=1, metavar="S",
                   help="PixArt-Σ KV compression: keys/values downsampled SxS on the second half of the blocks (default: off)")
    p.add_argument("--window", type=int, default=None, metavar="PX",
                   help="force sliding windows of PX pixels (overlap a quarter) (default: only if nothing else fits)")
    g = p.add_argument_group("training (PixArt): the memory of one training step instead of a sampling run")
    g.add_argument("--train", choices=["lora", "full"], default=None, help="LoRA or full fine-tune")
    g.add_argument("--checkpointing", action="store_true", help="gradient checkpointing per block")
    g.add_argument("--lora-rank", type=int, default=64, help="(default: %(default)s)")
    g.add_argument("--lora-targets", choices=list(plan_train.LORA_TARGETS), default="attention",
                   help="adapted Linear layers (default: %(default)s: q, k, v, out of self- and cross-attention)")
    g.add_argument("--batch", type=int, default=1, help="images per step (default: %(default)s)")
    g.add_argument("--optimizer", choices=list(plan_train.OPTIMIZER_BYTES), default="fp32",
                   help="full fine-tune: fp32 master + grads + AdamW (16 B/param) or all bf16 (8 B) (default: %(default)s)")
    p.set_defaults(func=_plan)
    for command in sub.choices.values():     # --debug after the command too (SUPPRESS keeps the parent's value)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
    return parser


# Errors that are the user's to fix: printed as they are. Anything else is a bug: its type is shown too.
EXPECTED_ERRORS = (InputError, CheckpointError, NonFiniteError, FileNotFoundError, ValueError)


def error_message(e: Exception) -> str:
    """One or two lines for the terminal: the error's own message, or, for an unexpected error, its type
    and the way to get the traceback."""
    if isinstance(e, EXPECTED_ERRORS):
        return f"error: {e}"
    return f"error: {type(e).__name__}: {e}\n(an unexpected error: run again with --debug to see the traceback)"


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:          # argparse's own errors (unknown --model, ...) and --help
        return int(e.code or 0)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:          # noqa: BLE001 -- the command line prints errors; --debug re-raises them
        if getattr(args, "debug", False):
            raise
        print(error_message(e), file=sys.stderr)
        return 2 if isinstance(e, EXPECTED_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())
