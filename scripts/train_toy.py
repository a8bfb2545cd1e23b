"""Train the built-in toy DiT on scikit-learn's digits and write minidit/assets/toy_digits.safetensors.

    python scripts/train_toy.py                 # the shipped weights (about 5 min on 2 CPU cores)
    python scripts/train_toy.py --steps 300     # a quick look

Everything is the project's own code: `minidit.dit.DiT` with the `TOY` config, IDDPM's cosine beta
schedule (why not DiT's linear one: `minidit/pipelines/toy.py`), and the IDDPM hybrid loss (`training_losses`: eps-MSE + the VLB term that trains the
learned variance), the way DiT trains, with label dropout 0.1 so that classifier-free guidance
works. The loop is written out (`train`): sample a batch, the loss, step, EMA. The EMA weights
are saved; the config and this run's record (steps, wall time, final loss) go into the file's
safetensors metadata (`minidit.pipelines.toy.read_toy_metadata`). `scripts/train_toy_flow.py`
trains the rectified-flow toy with the same loop and another loss.

Seeded (`--seed`): on the same machine, torch version and thread count the run is repeatable.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import math
import platform
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from minidit.diffusion import get_beta_schedule, make_schedule, training_losses
from minidit.dit import DiT
from minidit.pipelines.toy import BETA_SCHEDULE, NUM_TIMESTEPS, TOY, WEIGHTS, load_digits_dataset, save_toy_model


def build_parser(description=__doc__, *, out=WEIGHTS, lr=4e-3, steps=1500) -> argparse.ArgumentParser:
    """The options of both toy trainings (scripts/train_toy_flow.py adds its own and other defaults)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps, then cosine decay to --final-lr")
    p.add_argument("--final-lr", type=float, default=0.1, help="the cosine's end, a fraction of --lr (0: decay to zero)")
    p.add_argument("--minutes", type=float, default=None,
                   help="a time budget instead of --steps: train until it is spent, the cosine following the clock "
                        "(for a shared machine; the steps done are recorded, the run is no longer repeatable)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=250, help="print the mean loss every N steps")
    p.add_argument("--out", type=str, default=str(out))
    return p


def lr_at(step: int, args, progress: float | None = None) -> float:
    """Warm-up over `args.warmup` steps, then a cosine from `args.lr` to `args.final_lr` x `args.lr` over the
    rest of the run: by step, or by `progress` in [0, 1] (the fraction of a time budget spent, `--minutes`)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if progress is None:
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = getattr(args, "final_lr", 0.1)
    return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args, config, loss_terms, record: dict) -> None:
    """The digits toys: `fit` a `DiT(config)` on scikit-learn's digits, save the EMA weights with
    `record` + the run's log (`save_toy_model`)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_data, y_data = load_digits_dataset()                       # (1797, 1, 16, 16) in [-1, 1], (1797,)

    def batch(size):
        idx = torch.randint(0, len(x_data), (size,))
        return x_data[idx], y_data[idx]                          # (B, 1, H, W), (B,)
    model = DiT(config).train()                                  # official init: adaLN-Zero
    print(f"toy DiT: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {len(x_data)} images, "
          f"{args.steps} steps of batch {args.batch_size}, {args.threads} threads")
    ema, info = fit(args, model, batch, loss_terms)
    save_toy_model(ema, args.out, {**record, **info})
    print(f"EMA weights -> {args.out}")


def fit(args, model, batch, loss_terms, on_step=None):
    """The training loop, for any toy (the digits here, the moving digits of `train_toy_video.py`):
    `batch(size)` -> (x0, condition) draws a batch, `loss_terms(model, x0, condition)` returns per-sample
    terms (B,) with "loss" (the one minimised; the others are logged). `on_step(steps_done, model, ema)`,
    if given, runs after every step (evaluation checkpoints, `scripts/conditioning_experiment.py`).
    -> (EMA copy of the model, the run's record: optimizer settings, seconds, the loss log, torch
    version, machine)."""
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    losses, log = [], []
    t0 = time.perf_counter()
    budget = getattr(args, "minutes", None)
    budget = budget * 60 if budget else None
    bar = tqdm(range(args.steps) if budget is None else itertools.count(), desc="train", mininterval=1.0)
    for step in bar:
        # with a time budget the cosine follows the clock from the end of the warm-up, and the run stops at it
        progress = None
        if budget is not None:
            if step == args.warmup:
                t_warm = time.perf_counter()
            if step >= args.warmup:
                progress = (time.perf_counter() - t_warm) / max(1e-9, budget - (t_warm - t0))
                if progress >= 1.0:
                    break
        # the model drops 10% of the conditions to the null class itself (train mode), for CFG
        terms = loss_terms(model, *batch(args.batch_size))                  # (B,) each
        loss = terms["loss"].mean()

        for group in opt.param_groups:
            group["lr"] = lr_at(step, args, progress)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # EMA of the weights; the decay ramps up (1+n)/(10+n) so the zero-initialised start is forgotten
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1.0 - decay)
        if on_step is not None:
            on_step(step + 1, model, ema)

        losses.append({k: v.mean().item() for k, v in terms.items()})
        bar.set_postfix(loss=f"{losses[-1]['loss']:.4f}", refresh=False)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            recent = {k: sum(d[k] for d in losses[-args.log_every:]) / len(losses[-args.log_every:]) for k in terms}
            log.append({"step": step + 1, **{k: round(v, 5) for k, v in recent.items()},
                        "seconds": round(time.perf_counter() - t0, 1)})
            tqdm.write(f"step {step + 1:5d}  " + "  ".join(f"{k} {v:.4f}" for k, v in recent.items())
                       + f"  lr {lr_at(step, args, progress):.2e}  {time.perf_counter() - t0:.0f} s")

    seconds = time.perf_counter() - t0
    steps = len(losses)
    if not log or log[-1]["step"] != steps:                        # a time budget's last, partial window
        tail = losses[-(steps - (log[-1]["step"] if log else 0)):]
        log.append({"step": steps, **{k: round(sum(d[k] for d in tail) / len(tail), 5) for k in tail[0]},
                    "seconds": round(seconds, 1)})
    info = {"steps": steps, **({"minutes": budget / 60} if budget else {}), "batch_size": args.batch_size,
            "lr": args.lr, "warmup": args.warmup, "final_lr": getattr(args, "final_lr", 0.1),
            "ema": args.ema, "seed": args.seed, "threads": args.threads, "train_seconds": round(seconds, 1),
            **{f"final_{k}": log[-1][k] for k in log[-1] if k not in ("step", "seconds")}, "loss_log": log,
            "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor()}".strip()}
    print(f"done in {seconds / 60:.1f} min; final loss {log[-1]['loss']:.4f}")
    return ema, info


def main(argv=None):
    args = build_parser().parse_args(argv)
    schedule = make_schedule(get_beta_schedule(BETA_SCHEDULE, NUM_TIMESTEPS))

    def ddpm_terms(model, x0, y):
        t = torch.randint(0, NUM_TIMESTEPS, (len(x0),))                      # uniform t, as DiT
        return training_losses(lambda x_t, tt: model(x_t, tt, y), schedule, x0, t, learn_sigma=True)
    train(args, TOY, ddpm_terms, {"objective": "ddpm (IDDPM hybrid loss)"})


if __name__ == "__main__":
    main()
