"""Train the built-in video toy on moving digits -> minidit/assets/toy_video.safetensors.

    python scripts/train_toy_video.py                    # the factorized model, 1200 steps (the shipped run's first part)
    python scripts/train_toy_video.py --attention full --out /tmp/full.safetensors
    python scripts/train_toy_video.py --compare          # both at once, same budget -> the shipped file +
                                                         # benchmarks/results/toy_video_attention.txt
    python scripts/train_toy_video.py --init minidit/assets/toy_video.safetensors --lr 2e-3 --warmup 50 --threads 2
    python scripts/train_toy_video.py --init minidit/assets/toy_video.safetensors --minutes 13 --lr 1e-3 \
        --final-lr 0 --ema 0.998 --warmup 50 --threads 2
    python scripts/train_toy_video.py --init minidit/assets/toy_video.safetensors --steps 6000 --lr 1e-3 \
        --final-lr 0 --ema 0.999 --warmup 50 --threads 2
    python scripts/train_toy_video.py --init minidit/assets/toy_video.safetensors --steps 5000 --lr 5e-4 \
        --final-lr 0 --ema 0.999 --warmup 50 --threads 1
                                                         # the shipped file: the factorized arm of --compare,
                                                         # continued by these four (metadata "history")
    python scripts/train_toy_video.py --steps 100        # a quick look

The digits toys' loop (`scripts/train_toy.py`'s `fit`: AdamW, warm-up + cosine learning rate,
gradient clipping, EMA) on clips drawn afresh every step (`moving_digits.draw_batch`: a random
sklearn digit, direction and start), with the rectified-flow objective of the flow digits toy
(`minidit.flow.flow_loss`, logit-normal sigma). The network is `TOY_VIDEO` (or `TOY_VIDEO_FULL`,
the same parameters attending over all tokens: `--attention full`).

After training, the EMA model is graded as `tests/test_toy_video.py` grades it (`EVAL`: every digit x
every direction x 3 clips, `moving_digits.evaluate`), and the file's metadata records the config,
the run (steps, seconds, losses, threads, machine; with `--init`, every earlier run as "history"),
the two quality figures and the memory: the process's peak RSS during training and the bytes
autograd saved for the backward pass of one batch (an exact count: every tensor kept by the graph, each storage once).

Seeded (`--seed`): on the same machine, torch version and thread count the run is repeatable
(not with `--minutes`: its step count follows the machine's load).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                                  # run from a checkout without installing
from minidit.flow import flow_loss, training_sigmas
from minidit.pipelines import moving_digits as md
from minidit.pipelines.memory import stage
from minidit.pipelines.toy import save_toy_model
from minidit.pipelines.toy_video import (DEFAULT_GUIDANCE, DEFAULT_STEPS, TOY_VIDEO, TOY_VIDEO_FULL, WEIGHTS,
                                         load_video_model, read_video_metadata, sample_video)
from minidit.video_dit import VideoDiT
from train_toy import build_parser, fit                       # scripts/train_toy.py: the same loop

NUM_TIMESTEPS = 1000
EVAL = dict(clips_per_condition=3, seed=1234)                  # 10 digits x 4 directions x 3 = 120 clips
RESULTS = ROOT / "benchmarks" / "results" / "toy_video_attention.txt"


def eval_conditions(clips_per_condition: int = EVAL["clips_per_condition"]):
    """(digits, directions) of the graded set: every (digit, direction) pair `clips_per_condition` times."""
    pairs = torch.cartesian_prod(torch.arange(10), torch.arange(len(md.DIRECTIONS)))     # (40, 2)
    pairs = pairs.repeat(clips_per_condition, 1)
    return pairs[:, 0], pairs[:, 1]


def grade(model, classifier=None, seed: int = EVAL["seed"], steps: int = DEFAULT_STEPS,
          guidance: float = DEFAULT_GUIDANCE) -> dict:
    """The two quality figures of `model` on the graded set (as `tests/test_toy_video.py` computes them)."""
    digits, directions = eval_conditions()
    clips = sample_video(digits, directions.tolist(), seed=seed, steps=steps, guidance=guidance, model=model)
    r = md.evaluate(clips, digits, directions, classifier or md.digit_classifier())
    return {"frame_accuracy": round(r["frame_accuracy"], 4), "motion_accuracy": round(r["motion_accuracy"], 4),
            "clips": len(digits), "seed": seed, "steps": steps, "guidance": guidance}


def saved_for_backward_bytes(model, x0, y, d) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one loss (each storage counted once)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = flow_loss(lambda x, t: model(x, t, y, d), x0, training_sigmas(len(x0)), torch.randn_like(x0)).mean()
    del loss
    return sum(n for ptr, n in storages.items() if ptr not in params)        # weights are not activations


def cpu_name() -> str:
    """The CPU's model name (`lscpu`'s "Model name"), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def train_one(args) -> None:
    config = TOY_VIDEO if args.attention == "factorized" else TOY_VIDEO_FULL
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sprites, labels = md.load_digit_sprites()                                 # (1797, 8, 8) in [0, 1], (1797,)

    def batch(size):
        clips, y, d = md.draw_batch(sprites, labels, size)                    # (B, F, H, W), (B,), (B,)
        return md.clips_to_model(clips), y, d                                 # (B, 1, F, H, W) in [-1, 1]

    def flow_terms(model, x0, y, d):
        sigma = training_sigmas(len(x0))                                      # (B,) logit-normal
        return {"loss": flow_loss(lambda x, t: model(x, t, y, d), x0, sigma, torch.randn_like(x0), NUM_TIMESTEPS)}

    model = VideoDiT(config).train()
    if args.init is not None:                    # continue a run: its weights (the EMA) as the start
        init_config, init_info = read_video_metadata(args.init)
        if init_config != config:
            raise SystemExit(f"--init {args.init} holds a {init_config.attention} model with another config")
        model.load_state_dict(load_video_model(args.init).state_dict())
        run = {k: init_info[k] for k in ("steps", "batch_size", "lr", "warmup", "final_lr", "ema", "threads",
                                         "train_seconds", "final_loss", "cpu", "quality") if k in init_info}
        history = init_info.get("history") or ([init_info["init"]] if "init" in init_info else [])
        previous = {"init": {"file": Path(args.init).name, **run},     # the run continued here, and before it:
                    "history": history + [{"file": Path(args.init).name, **run}]}   # every earlier run, in order
    else:
        previous = {}
    n_params = sum(p.numel() for p in model.parameters())
    print(f"video toy ({config.attention} attention): {n_params / 1e6:.3f} M parameters, "
          f"{f'{args.minutes} minutes' if args.minutes else f'{args.steps} steps'} of batch {args.batch_size}, "
          f"{args.threads} threads")
    memory = {}
    with stage(memory, "train", "cpu"):
        ema, info = fit(args, model, batch, flow_terms)
    rng = torch.get_rng_state()                                               # measuring draws random numbers
    torch.manual_seed(0)
    x0, y, d = batch(args.batch_size)
    saved = saved_for_backward_bytes(model, x0, y, d)
    torch.set_rng_state(rng)
    quality = grade(ema)
    info = {"objective": "rectified flow (velocity)", "density": "logit_normal", "attention": config.attention,
            "parameters": n_params, **previous, **info, "cpu": cpu_name(), "quality": quality,
            "peak_rss_gib": round(memory["train"]["peak_gib"], 3) if memory["train"]["peak_gib"] else None,
            "saved_for_backward_mib": round(saved / 2**20, 1)}
    save_toy_model(ema, args.out, info)
    print(f"quality: {quality['frame_accuracy']:.1%} of frames show the requested digit, "
          f"{quality['motion_accuracy']:.1%} of clips move the requested way; EMA weights -> {args.out}")


def compare(args) -> None:
    """Train both attention patterns at once, one single-threaded process each (the same machine load
    for both; separate peak-memory figures), then write RESULTS."""
    rows, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {"factorized": Path(args.out), "full": Path(tmp) / "full.safetensors"}
        for mode, out in outs.items():
            cmd = [sys.executable, __file__, "--attention", mode, "--out", str(out), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
                   "--threads", str(args.threads), "--log-every", str(args.log_every)]
            log = open(Path(tmp) / f"{mode}.log", "w")
            runs[mode] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        for mode, (proc, log) in runs.items():
            if proc.wait() != 0:
                raise SystemExit(f"the {mode} run failed:\n{Path(log.name).read_text()[-3000:]}")
            log.close()
            print(f"--- {mode}\n" + "\n".join(l for l in Path(log.name).read_text().replace("\r", "\n").splitlines()
                                              if l.startswith(("step", "done", "quality", "video"))))
            rows[mode] = read_video_metadata(outs[mode])[1]
    write_results(rows)


def write_results(rows: dict) -> None:
    f = rows["factorized"]
    lines = ["Video toy: factorized (spatial / temporal blocks alternating) vs full spacetime attention, equal budget",
             f"(scripts/train_toy_video.py --compare; same parameters ({f['parameters']}), data, seed {f['seed']}, "
             f"{f['steps']} steps of batch {f['batch_size']}, lr {f['lr']}, {f['threads']} threads;",
             f" graded on {f['quality']['clips']} clips (10 digits x 4 directions x 3), {f['quality']['steps']} Euler "
             f"steps, guidance {f['quality']['guidance']}, seed {f['quality']['seed']})",
             f"machine: {f['cpu']}, torch {f['torch']}", "",
             f"{'attention':<12}{'digit ok (frames)':>19}{'motion ok (clips)':>19}{'train s':>9}{'final loss':>12}"
             f"{'peak RSS GiB':>14}{'saved for bwd MiB':>19}"]
    for mode, r in rows.items():
        q = r["quality"]
        lines.append(f"{mode:<12}{q['frame_accuracy']:>19.1%}{q['motion_accuracy']:>19.1%}{r['train_seconds']:>9.0f}"
                     f"{r['final_loss']:>12.4f}{r['peak_rss_gib']:>14.3f}{r['saved_for_backward_mib']:>19.1f}")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {RESULTS}")


def main(argv=None):
    parser = build_parser(__doc__, out=WEIGHTS, lr=4e-3, steps=1200)
    parser.set_defaults(batch_size=64, threads=1, log_every=100, warmup=100)
    parser.add_argument("--attention", choices=("factorized", "full"), default="factorized")
    parser.add_argument("--init", type=str, default=None,
                        help="start from the weights of a video-toy file (continue a run; recorded in the metadata)")
    parser.add_argument("--compare", action="store_true",
                        help=f"train both attention patterns and write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.compare:
        compare(args)
    else:
        train_one(args)


if __name__ == "__main__":
    main()
