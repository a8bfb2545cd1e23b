"""adaLN vs cross-attention vs MM-DiT, measured: train `minidit.conditioning_lab.ToyT2I` on the captioned
toy world and grade its samples with the world's caption checker.

    python scripts/conditioning_experiment.py                        # the full experiment, one process
    # the recorded one (benchmarks/results/conditioning.json): one process per core, then joined (its first
    # process was started with --seeds 0,1,2 and stopped after seed 1: a run depends on its seed alone)
    python scripts/conditioning_experiment.py --threads 1 --seeds 0,1 --out /tmp/c01.json &
    python scripts/conditioning_experiment.py --threads 1 --seeds 2 --out /tmp/c2.json
    python scripts/conditioning_experiment.py --merge /tmp/c01.json /tmp/c2.json
    python scripts/conditioning_experiment.py --tiny --out /tmp/c.json   # a seconds-long smoke run
    python scripts/conditioning_experiment.py --built-in --designs cross --ddpm-designs '' --seeds 0 \\
        --steps 6000 --lr 1e-3 --ema 0.999 --checkpoints 3 --threads 1 \\
        --save minidit/assets/toy_t2i.safetensors                   # the built-in model (conditioning_lab.BUILT_IN)
    python scripts/conditioning_experiment.py --built-in --designs cross --ddpm-designs '' --seeds 0 \\
        --steps 6000 --lr 5e-4 --ema 0.999 --checkpoints 3 --threads 1 \\
        --init minidit/assets/toy_t2i.safetensors --save /tmp/toy_t2i.safetensors   # continue it (its record: "history")
    # --levels 1,2,2,3,3,4,4: a continuation that draws one-object captions half as often as each of the others
    # --relations 'left of,above': captions with these relations only (a curriculum's first phase)
    # how the shipped model learned the relations, after 33 000 steps on all captions (each run --init the
    # one before, all with --ema 0.998 and --levels 1,2,2,3,3,4,4 unless shown; the exact commands are in the
    # file's "history"):
    #   --relations 'left of,above' --sigma-loc 0.5 --lr 4e-4 --steps 2500   (changed nothing measurable)
    #   --relations 'left of,above' --sigma-loc 2.0 --lr 1e-3 --steps 2000   (being named first -> left / top)
    #   --sigma-loc 2.0 --lr 1e-3 --steps 6000, then --lr 5e-4 --steps 2200  (all four relations: when to flip it)
    # then three objects and long captions drawn more often, --sigma-loc 2.0 --lr 5e-4 (87.5 % of the prompt set):
    #   --levels 1,2,2,3,3,3,4,4,4 --steps 3000, then --levels 1,2,3,3,3,4,4,4 --steps 5000

Every run: one design x one objective x one seed, the same data stream (`toy_world.draw_batch`, a fresh
batch every step, all levels mixed, from a generator seeded by the seed alone), the same noise and
timestep draws, the same optimizer, steps and parameter budget (`conditioning_lab.PRESETS`, ±3 %).
The loop is the digits toys' `fit` (`scripts/train_toy.py`: AdamW, warm-up + cosine, gradient clip,
EMA); the losses are the library's:

    flow   sigma ~ logit-normal, loss = || v_theta(x_sigma, 1000 sigma) - (eps - x0) ||^2   `flow.flow_loss`
    ddpm   t ~ U{0..999} on IDDPM's cosine schedule, loss = || eps_theta - eps ||^2      `diffusion.training_losses`

with 10 % of the captions dropped to "" (classifier-free guidance); flow's sigma = sigmoid(m + n), n ~ N(0, 1),
m = --sigma-loc (SD3's 0 by default). At `--checkpoints` points of each
run the EMA weights sample a fixed, seeded caption set (`--eval-per-level` per level) with CFG
(`pipelines.common.guided_model_fn`) — Euler on the flow grid for flow, DDIM for DDPM, the same
number of steps — and `toy_world.check_batch` grades each image against its caption: accuracy per level,
plus partial credit from `toy_world.check_details` (items right, colours right, object count, relations).
Measured with the presets (AMD EPYC, batch 48, one thread per process with a second process on the other
core): 0.125 s per step (adaln), 0.139 (cross), 0.150 (mmdit) with flow, 0.126 (cross, DDPM); one seed of the
four runs of 4000 steps took about 50 min with evaluation. (An earlier 1500-step budget left every design
below 4 % caption accuracy.)

Output: `--out` (JSON: every run's settings, parameter counts, seconds, loss curve, accuracy per level
per checkpoint, the machine) and `--table` (mean ± std over seeds per design / objective / level).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                                   # run from a checkout without installing
sys.path.insert(0, str(ROOT / "scripts"))
from minidit.conditioning_lab import (BUILT_IN, PRESETS, ToyT2I, ToyT2IConfig, drop_captions,  # noqa: E402
                                      parameter_groups, toy_tokenizer)
from minidit.errors import InputError  # noqa: E402
from minidit.diffusion import get_beta_schedule, make_schedule, training_losses  # noqa: E402
from minidit.flow import flow_loss, training_sigmas  # noqa: E402
from minidit.pipelines import toy_world  # noqa: E402
from minidit.pipelines.toy import load_toy_model, read_toy_metadata, save_toy_model  # noqa: E402
from minidit.pipelines.toy_t2i import BETA_SCHEDULE, NUM_TIMESTEPS, OBJECTIVES, sample_images  # noqa: E402
from train_toy import fit  # noqa: E402   scripts/train_toy.py: the toys' loop

P_UNCOND = 0.1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--designs", default="adaln,cross,mmdit", help="comma-separated, of conditioning_lab.PRESETS")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--objectives", default="flow", help="trained for every design (comma-separated: flow, ddpm)")
    p.add_argument("--ddpm-designs", default="cross", help="designs also trained with DDPM ('' for none)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--levels", default="1,2,3,4",
                   help="the training batches' caption levels, each example's drawn uniformly from this list: a level "
                        "named twice is drawn twice as often (e.g. 1,2,2,3,3,4,4); the evaluation set is unchanged")
    p.add_argument("--relations", default=",".join(toy_world.RELATIONS),
                   help="the relations the training captions may use, comma-separated (a curriculum: first "
                        "'left of,above', where being named first alone tells where an item goes, then all four); "
                        "the evaluation set is unchanged")
    p.add_argument("--sigma-loc", type=float, default=0.0,
                   help="flow: the location m of the logit-normal sigma density (SD3 §3.1; 0 = its default)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--final-lr", type=float, default=0.1, help="the cosine's end, a fraction of --lr")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--checkpoints", type=int, default=4, help="evaluations per run, evenly spaced (the last at the end)")
    p.add_argument("--eval-per-level", type=int, default=32, help="captions per level in the fixed evaluation set")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--built-in", action="store_true",
                   help="train conditioning_lab.BUILT_IN (the built-in model's size) instead of the design's preset")
    p.add_argument("--init", default=None,
                   help="continue a saved run (a --save file): its weights as the start, its config; recorded as 'history'")
    p.add_argument("--tiny", action="store_true", help="tiny models, a few steps: a smoke test of the whole script")
    p.add_argument("--save", default=None, help="write the EMA weights of the (single) run here (safetensors)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "conditioning.json"))
    p.add_argument("--table", default=None, help="the text table (default: --out with .txt)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="train nothing: join the runs of results files written with the same settings but other "
                        "seeds (e.g. one process per core) into --out and its table")
    return p


def tiny_config(design: str):
    """A few-thousand-parameter model of the design, for --tiny and the tests."""
    return replace(PRESETS[design], hidden_size=16, depth=2, num_heads=2, text_hidden_size=16, text_layers=1,
                   text_heads=2)


def text_inputs(tokenizer, captions, length):
    enc = tokenizer(list(captions), max_length=length)
    return enc["input_ids"], enc["attention_mask"]                                       # (B, L) each


def loss_fn(objective: str, schedule, generator, sigma_loc: float = 0.0):
    """loss_terms(model, x0, (ids, mask)) for `fit`: caption dropout, then the objective's per-sample loss.
    All draws come from `generator`, so two designs with one seed see the same noise, t and dropout.
    sigma_loc: the logit-normal's location m (flow; SD3's default 0, > 0 trains more often at high noise,
    where the layout is decided)."""
    def terms(model, x0, caption):
        ids, mask, empty_ids, empty_mask = caption
        ids, mask, _ = drop_captions(ids, mask, empty_ids, empty_mask, P_UNCOND, generator)
        noise = torch.randn(x0.shape, generator=generator)
        if objective == "flow":
            sigma = training_sigmas(len(x0), "logit_normal", loc=sigma_loc, generator=generator)   # (B,)
            return {"loss": flow_loss(lambda x, t: model(x, t, ids, mask), x0, sigma, noise, NUM_TIMESTEPS)}
        t = torch.randint(0, NUM_TIMESTEPS, (len(x0),), generator=generator)
        out = training_losses(lambda x, tt: model(x, tt, ids, mask), schedule, x0, t, noise, learn_sigma=False)
        return {"loss": out["loss"]}
    return terms


def eval_set(per_level: int):
    """The fixed caption set: per level, `per_level` captions from a generator seeded by the level."""
    return {level: toy_world.draw_batch(per_level, torch.Generator().manual_seed(1000 + level), levels=(level,))[1]
            for level in toy_world.LEVELS}


@torch.no_grad()
def evaluate(model, tokenizer, captions_by_level, objective, args, length) -> dict:
    """Sample every caption (CFG, fixed noise) through the built-in model's own sampling code
    (`pipelines/toy_t2i.sample_images`) and grade it: {level: fraction correct}, {level: partial_credit}."""
    result, partial = {}, {}
    for level, captions in captions_by_level.items():
        c, n = model.config, len(captions)
        x_T = torch.randn(n, c.in_channels, c.input_size, c.input_size, generator=torch.Generator().manual_seed(level))
        images = sample_images(model, tokenizer, captions, objective, x_T, steps=args.sample_steps,
                               guidance=args.guidance)                                 # (n, 3, 24, 24) in [0, 1]
        result[level] = sum(toy_world.check_batch(images, captions)) / n
        partial[level] = partial_credit([toy_world.check_details(img, cap) for img, cap in zip(images, captions)])
    return result, partial


def partial_credit(details: list[dict]) -> dict:
    """What of the captions the images got right, from `toy_world.check_details`: items (found with digit and
    colour), colours (an object of the item's colour, digit right or not), count (as many objects as items),
    relations (true among all the captions' relations; None at level 1)."""
    items = [d["failure"] for r in details for d in r["items"]]
    relations = [d["holds"] for r in details for d in r["relations"]]
    return {"items": sum(f is None for f in items) / len(items),
            "colours": sum(f is None or f.startswith("wrong digit") for f in items) / len(items),
            "count": sum(len(r["objects"]) == len(r["items"]) for r in details) / len(details),
            "relations": sum(h is True for h in relations) / len(relations) if relations else None}


def run_one(design, objective, seed, args, tokenizer, length, captions_by_level):
    config = tiny_config(design) if args.tiny else BUILT_IN if args.built_in else PRESETS[design]
    config = replace(config, text_vocab_size=len(tokenizer.vocab), text_max_length=length)
    torch.manual_seed(seed)
    model = ToyT2I(config).train()
    history = []
    if args.init:                                  # continue a run: its (EMA) weights, its config, its record
        init_config, init_info = read_toy_metadata(args.init, ToyT2IConfig)
        if init_config != config or init_info.get("objective") != objective:
            raise SystemExit(f"--init {args.init} holds a {init_info.get('objective')} {init_config.design} model "
                             f"with another config than this run's {objective} {design} (--built-in / --tiny?)")
        model.load_state_dict(load_toy_model(args.init, ToyT2I, ToyT2IConfig).state_dict())
        earlier = {k: v for k, v in init_info.items() if k not in ("history", "loss_log", "vocabulary")}
        history = init_info.get("history", []) + [{"file": Path(args.init).name, **earlier}]
    groups = parameter_groups(model)
    data_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator().manual_seed(10_000 + seed)
    empty_ids, empty_mask = text_inputs(tokenizer, [""], length)

    def batch(size):
        images, captions, _ = toy_world.draw_batch(size, data_gen, levels=args.train_levels,
                                                        relations=args.train_relations)   # levels mixed
        ids, mask = text_inputs(tokenizer, captions, length)
        return images, (ids, mask, empty_ids, empty_mask)

    marks = sorted({max(1, round(args.steps * (k + 1) / args.checkpoints)) for k in range(args.checkpoints)})
    accuracy, eval_seconds = [], [0.0]

    def on_step(done, _model, ema):
        if done in marks:
            t0 = time.perf_counter()
            acc, partial = evaluate(ema, tokenizer, captions_by_level, objective, args, length)
            eval_seconds[0] += time.perf_counter() - t0
            accuracy.append({"step": done, "per_level": {str(k): v for k, v in acc.items()},
                             "mean": sum(acc.values()) / len(acc),
                             "partial": {str(k): v for k, v in partial.items()}})
            print(f"  {design}/{objective}/seed {seed} step {done}: "
                  + "  ".join(f"L{k} {v:.2f}" for k, v in acc.items()), flush=True)

    fit_args = argparse.Namespace(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                                  final_lr=args.final_lr, ema=args.ema, seed=seed, threads=args.threads,
                                  log_every=args.log_every, minutes=None)
    schedule = make_schedule(get_beta_schedule(BETA_SCHEDULE, NUM_TIMESTEPS))
    ema, info = fit(fit_args, model, batch, loss_fn(objective, schedule, noise_gen, args.sigma_loc), on_step)
    if args.save:
        save_toy_model(ema, args.save, {**info, "design": design, "objective": objective, "levels": args.levels,
                                        "relations": args.relations, "sigma_loc": args.sigma_loc,
                                        "vocabulary": list(toy_world.VOCABULARY), "accuracy": accuracy,
                                        **saved_record(args), **({"history": history} if history else {})})
    return {"design": design, "objective": objective, "seed": seed, "params": groups["total"],
            "param_groups": groups, "config": asdict(config), "steps": info["steps"],
            "seconds": round(info["train_seconds"] - eval_seconds[0], 1), "eval_seconds": round(eval_seconds[0], 1),
            "seconds_per_step": round((info["train_seconds"] - eval_seconds[0]) / info["steps"], 4),
            "loss_log": info["loss_log"], "final_loss": info["final_loss"], "accuracy": accuracy}


def saved_record(args) -> dict:
    """What a --save file records besides the training: the command line, and how `accuracy` was measured."""
    return {"command": shlex.join(["python", "scripts/conditioning_experiment.py", *args.argv]),
            "evaluation": {"captions_per_level": args.eval_per_level, "sample_steps": args.sample_steps,
                           "guidance": args.guidance,
                           "set": f"conditioning_experiment.eval_set({args.eval_per_level}): draw_batch seeded 1000 + level"}}


def mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results: dict) -> str:
    """mean ± std over seeds of the final accuracy, per design / objective / level (+ accuracy vs steps)."""
    runs = results["runs"]
    keys = sorted({(r["design"], r["objective"]) for r in runs}, key=lambda k: (OBJECTIVES.index(k[1]), k[0]))
    levels = [str(v) for v in toy_world.LEVELS]
    s = results["settings"]
    lines = [f"Caption accuracy of ToyT2I samples (toy_world.check_batch), {s['eval_per_level']} fixed captions per level, "
             f"CFG {s['guidance']}, {s['sample_steps']} sampling steps; mean ± std over seeds.",
             f"{s['steps']} steps of batch {s['batch_size']}, lr {s['lr']}, EMA {s['ema']}; "
             f"{results['machine']}, {s['threads']} threads, torch {results['torch']}.", ""]
    head = f"{'design':7s} {'objective':9s} {'seeds':5s} {'params':>8s} {'s/step':>6s} " + " ".join(
        f"{'level ' + v:>12s}" for v in levels) + f" {'mean':>12s} {'final loss':>15s}"
    lines += [head, "-" * len(head)]
    for design, objective in keys:
        rs = [r for r in runs if (r["design"], r["objective"]) == (design, objective)]
        finals = [r["accuracy"][-1] for r in rs]
        cells = [mean_std([f["per_level"][v] for f in finals]) for v in levels] + [mean_std([f["mean"] for f in finals])]
        loss = mean_std([r["final_loss"] for r in rs])
        lines.append(f"{design:7s} {objective:9s} {len(rs):5d} {rs[0]['params']:8d} "
                     f"{statistics.mean(r['seconds_per_step'] for r in rs):6.3f} "
                     + " ".join(f"{100 * m:6.1f} ± {100 * d:4.1f}" for m, d in cells)
                     + f" {loss[0]:.4f} ± {loss[1]:.4f}")
    lines += ["", "Partial credit at the end (toy_world.check_details), mean over levels, then mean ± std over seeds:",
              "items = found with digit and colour, colours = an object of the item's colour, count = as many",
              "objects as items, relations = true (levels 2-4)."]
    for design, objective in keys:
        rs = [r for r in runs if (r["design"], r["objective"]) == (design, objective)]
        cells = []
        for part in ("items", "colours", "count", "relations"):
            per_run = [statistics.mean(v[part] for v in r["accuracy"][-1]["partial"].values() if v[part] is not None)
                       for r in rs]
            cells.append((part, *mean_std(per_run)))
        lines.append(f"{design:7s} {objective:9s} " + "  ".join(f"{p} {100 * m:.1f} ± {100 * d:.1f}" for p, m, d in cells))
    lines += ["", "Mean caption accuracy (all levels) vs training step, mean ± std over seeds:"]
    for design, objective in keys:
        rs = [r for r in runs if (r["design"], r["objective"]) == (design, objective)]
        steps = [a["step"] for a in rs[0]["accuracy"]]
        cells = [mean_std([r["accuracy"][i]["mean"] for r in rs]) for i in range(len(steps))]
        lines.append(f"{design:7s} {objective:9s} " + "  ".join(
            f"@{st}: {100 * m:.1f} ± {100 * d:.1f}" for st, (m, d) in zip(steps, cells)))
    return "\n".join(lines) + "\n"


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or platform.machine()
    return name


SEED_FREE = ("seeds", "threads", "merge")             # settings that may differ between files --merge joins


def merge(paths) -> dict:
    """One results dict from several files of one experiment (same settings but seeds and threads, same
    machine kind and evaluation captions); refused if a (design, objective, seed) run appears twice."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:]):
        for key in ("settings", "eval_captions", "torch", "machine"):
            a, b = first[key], part[key]
            if key == "settings":
                a, b = ({k: v for k, v in x.items() if k not in SEED_FREE} for x in (a, b))
            if a != b:
                differ = {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)} if key == "settings" else ""
                raise SystemExit(f"--merge: {path} has other {key} than {paths[0]}: {differ} "
                                 "(only the seeds and thread counts may differ)")
    runs = [r for part in parts for r in part["runs"]]
    seen = [(r["design"], r["objective"], r["seed"]) for r in runs]
    twice = sorted({k for k in seen if seen.count(k) > 1})
    if twice:
        raise SystemExit(f"--merge: run(s) {twice} appear in more than one file")
    seeds = sorted({r["seed"] for r in runs})
    threads = sorted({part["settings"]["threads"] for part in parts})
    settings = {**first["settings"], "seeds": ",".join(map(str, seeds)),
                "threads": threads[0] if len(threads) == 1 else threads}
    return {**first, "settings": settings, "merged_from": [Path(p).name for p in paths], "runs": runs}


def write_results(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))


def write_table(results: dict, args) -> None:
    """The text table of `results` into --table (default: --out with .txt), and on stdout."""
    text = table(results)
    Path(args.table or Path(args.out).with_suffix(".txt")).write_text(text)
    print(text)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.merge:
        results = merge(args.merge)
        write_results(results, Path(args.out))
        write_table(results, args)
        return
    if args.tiny:
        args.steps, args.batch_size, args.warmup, args.checkpoints = 4, 4, 1, 2
        args.eval_per_level, args.sample_steps, args.log_every = 2, 2, 2
    designs = [d for d in args.designs.split(",") if d]
    unknown = [d for d in designs + [d for d in args.ddpm_designs.split(",") if d] if d not in PRESETS]
    if unknown:
        raise SystemExit(f"unknown design(s) {unknown}: one of {list(PRESETS)}")
    plan = [(d, o) for o in args.objectives.split(",") for d in designs]
    plan += [(d, "ddpm") for d in args.ddpm_designs.split(",") if d and (d, "ddpm") not in plan]
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        args.train_levels = tuple(int(v) for v in args.levels.split(","))
        toy_world.draw_batch(1, torch.Generator(), levels=args.train_levels)
    except (ValueError, InputError) as e:
        raise SystemExit(f"--levels {args.levels!r}: give comma-separated levels of {toy_world.LEVELS}, "
                         f"e.g. 1,2,2,3,3,4,4 ({e})")
    args.train_relations = tuple(r.strip() for r in args.relations.split(","))
    try:
        toy_world.draw_batch(1, torch.Generator(), levels=args.train_levels, relations=args.train_relations)
    except InputError as e:
        raise SystemExit(f"--relations {args.relations!r}: give comma-separated relations of "
                         f"{', '.join(toy_world.RELATIONS)}, e.g. 'left of,above' ({e})")
    if args.built_in and {d for d, _ in plan} != {BUILT_IN.design}:
        raise SystemExit(f"--built-in trains the {BUILT_IN.design!r} design: give --designs {BUILT_IN.design} --ddpm-designs ''")
    if args.save and len(plan) * len(seeds) != 1:
        raise SystemExit("--save writes one run's weights: give one design, one objective (--ddpm-designs '') "
                         "and one seed")
    torch.set_num_threads(args.threads)
    length = PRESETS["adaln"].text_max_length
    tokenizer = toy_tokenizer(toy_world.VOCABULARY, length)
    captions_by_level = eval_set(args.eval_per_level)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "table", "save", "argv", "train_levels",
                                                                "train_relations")}
    results = {"experiment": "conditioning: adaln vs cross vs mmdit", "settings": settings, "machine": machine(),
               "torch": torch.__version__, "eval_captions": {str(k): v for k, v in captions_by_level.items()},
               "runs": []}
    out = Path(args.out)
    for seed in seeds:                    # seed-major: a cut-short experiment still has every design
        for design, objective in plan:
            print(f"== {design} / {objective} / seed {seed}", flush=True)
            results["runs"].append(run_one(design, objective, seed, args, tokenizer, length, captions_by_level))
            write_results(results, out)                                     # after every run: partial results
    write_table(results, args)


if __name__ == "__main__":
    main()
