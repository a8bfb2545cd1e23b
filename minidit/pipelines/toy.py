"""The built-in models: a tiny class-conditional DiT trained on scikit-learn's 8x8 digits, twice.

It lets `python -m minidit sample` run on a fresh machine with no download: the weights
(`minidit/assets/toy_digits.safetensors`, ~5 MB) ship with the package, and
`scripts/train_toy.py` reproduces them on a laptop CPU with the project's own DDPM code. Its
rectified-flow twin (`toy_digits_flow.safetensors`, `scripts/train_toy_flow.py`,
`sample_flow_digits`) is the same network trained with SD3's objective: see "The flow toy" below.

Data. `sklearn.datasets.load_digits()`: 1797 grey-level 8x8 images, values 0..16, labels 0..9.
They are mapped to [-1, 1] (x / 8 - 1, the DDPM convention) and upsampled bilinearly to 16x16.
Why 16x16 with patch 4: the token grid is then 4x4 = 16 tokens, each covering 2x2 pixels of the
original digit, and the final layer unpatchifies 4x4 pixel blocks, so the images come out twice
as smooth as the data. More pixels carry no more information (the source is 8x8) and more tokens
cost CPU time: DiT's usual patch 2 (64 tokens) is ~3x slower per training example here.
Pixel space: no VAE; x_0 is the image itself, one channel.

Model. `TOY`: a DiT with the official block, adaLN-Zero, learned sigma (output [eps | v], two
channels) and label dropout 0.1 so that classifier-free guidance works; trained with the IDDPM
hybrid loss (eps-MSE + VLB), as DiT trains. One deliberate difference: the noise schedule
is IDDPM's cosine one, not DiT's linear one. The linear schedule was tuned for large images (and
DiT's 32x32x4 latents); on these tiny images it leaves a_bar < 0.05 from step 542 on, so almost
half of the training steps see near-pure noise, where x_t is almost eps and predicting it
teaches little. The cosine schedule (a_bar < 0.05 only from step 855) was made for exactly this
(IDDPM §3.2, small images).

Training (`scripts/train_toy.py`): 1500 AdamW steps of batch 128 at a peak learning rate of 4e-3,
EMA 0.999. The learning rate was what mattered. Measured here with 200 samples (20 DDPM steps,
guidance 2, the SVM of `tests/test_toy.py`): lr 1e-3 for 3000 steps put 68 % of the samples in the
requested class, lr 2e-3 for 1500 steps 36 %, lr 4e-3 for 1500 steps 98 %.

Sampling. DDPM ancestral sampling over a respaced schedule (`space_timesteps`, `respace`;
DiT uses 250 steps, the toy needs far fewer) with the learned variances, and CFG through
`DiT.forward_with_cfg(..., cfg_channels=None)`: with one channel the official "first 3
channels" quirk would guide the eps channel *and* the variance channel, so all eps channels
(here: the only one) are guided and the variance is left alone.

The flow toy. `TOY_FLOW` = `TOY` with learn_sigma=False: one output channel, the velocity
v = eps - x0 of the straight path x_sigma = (1 - sigma) x0 + sigma eps, fed timestep 1000 sigma;
trained with `flow.flow_loss` on logit-normal sigma (SD3's m = 0, s = 1) and the DDPM toy's data,
loop, batch, step count, optimizer, learning-rate schedule and EMA. No noise schedule to choose,
and the learning rate hardly mattered (200 samples, 20 Euler steps, the SVM of `tests/test_toy.py`):
lr 2e-3, 4e-3 and 8e-3 all put 100 % of the samples in the requested class with guidance 2 and
97 % without (the DDPM toy, same seed and labels: 78 % without guidance at its default 50 steps).
Shipped: lr 4e-3, as the DDPM toy. Sampled with Euler (or DPM-Solver++) on
`grid.flow_grid(steps, shift)`, 20 steps by default; chapter 07 compares the two toys at equal
steps.

Shape legend: N samples, 1 channel, H = W = 16 pixels (IMAGE_SIZE).
"""
from __future__ import annotations

import inspect
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

from minidit.dit import DiT, DiTConfig
from minidit.errors import InputError
from minidit.samplers import Sampler
from weights_loader.io import build_on_meta, load_into, read_state_dict, save_safetensors
from .checks import check_count, check_guidance, check_output_path, check_seed, check_steps, is_integer
from .common import guided_model_fn, initial_noise

IMAGE_SIZE = 16                      # pixels per side after upsampling the 8x8 digits
WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "toy_digits.safetensors"
FLOW_WEIGHTS = WEIGHTS.with_name("toy_digits_flow.safetensors")        # the rectified-flow toy
TOY = DiTConfig(input_size=IMAGE_SIZE, patch_size=4, in_channels=1, hidden_size=128, depth=4,
                num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=True)
TOY_FLOW = replace(TOY, learn_sigma=False)   # the same DiT with one output channel: the velocity
NUM_TIMESTEPS = 1000                 # training steps of the noise schedule (flow: timestep = 1000 sigma)
BETA_SCHEDULE = "squaredcos_cap_v2"  # IDDPM's cosine schedule (why not DiT's linear one: see above)
DEFAULT_STEPS = 50                   # respaced DDPM steps for sampling
FLOW_DEFAULT_STEPS = 20              # Euler steps for the flow toy
DEFAULT_GUIDANCE = 2.0               # classifier-free guidance scale

# --------------------------------------------------------------------------------------------
# Data: 8x8 digits in 0..16  <->  16x16 images in [-1, 1]
# --------------------------------------------------------------------------------------------


def digits_to_images(digits8) -> torch.Tensor:
    """(N, 8, 8) or (N, 64) grey levels 0..16 -> (N, 1, 16, 16) float32 in [-1, 1] (bilinear upsampling)."""
    x = torch.as_tensor(digits8, dtype=torch.float32).reshape(-1, 1, 8, 8)
    if x.min() < 0 or x.max() > 16:
        raise ValueError(f"digits must have grey levels in 0..16 (sklearn's load_digits), got "
                         f"{x.min().item()}..{x.max().item()}")
    x = x / 8.0 - 1.0                                                           # (N, 1, 8, 8)
    # bilinear interpolation is a convex combination of neighbours: the result stays in [-1, 1]
    return F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)


def images_to_digits(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 16, 16) images in [0, 1] (what `sample_digits` returns) -> (N, 64) grey levels 0..16,
    the format of sklearn's digits, by 2x2 average pooling (for a classifier trained on them)."""
    if images.ndim != 4 or images.shape[1:] != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}) images, got {tuple(images.shape)}")
    return (F.avg_pool2d(images.float(), 2) * 16.0).reshape(len(images), 64)  # (N, 64)


def load_digits_dataset():
    """scikit-learn's digits as training data: x0 (1797, 1, 16, 16) in [-1, 1], y (1797,) int64."""
    try:
        from sklearn.datasets import load_digits      # ships with scikit-learn, no download
    except ImportError as e:
        raise ImportError("training the toy model needs scikit-learn (the digits data set): "
                          "pip install scikit-learn (it is in requirements-dev.txt)") from e
    digits = load_digits()
    return digits_to_images(digits.images), torch.as_tensor(digits.target, dtype=torch.long)


# --------------------------------------------------------------------------------------------
# Weights: safetensors with the config and the training record in the metadata
# --------------------------------------------------------------------------------------------


def save_toy_model(model: DiT, path, info: dict) -> None:
    """Write `model`'s weights and, as safetensors metadata, its config and `info` (steps, time...)."""
    metadata = {"config": json.dumps(asdict(model.config)), "info": json.dumps(info)}
    save_safetensors(model.state_dict(), path, metadata=metadata)


def read_toy_metadata(path=WEIGHTS, config_cls=DiTConfig) -> tuple:
    """(config, training info) stored in a toy-model file; `config_cls` is the config dataclass of its
    network (`VideoDiTConfig` for the video toy, `pipelines/toy_video.py`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no toy-model weights at {path}. They ship with minidit (minidit/assets/); "
                                f"rebuild them with `python scripts/train_toy.py` (the DDPM toy), "
                                f"`python scripts/train_toy_flow.py` (the flow toy) or "
                                f"`python scripts/train_toy_video.py` (the video toy).")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path} has no 'config' in its safetensors metadata; is it a toy-model file "
                         f"written by one of the scripts/train_toy*.py?")
    return config_cls(**json.loads(metadata["config"])), json.loads(metadata.get("info", "{}"))


def load_toy_model(path=WEIGHTS, model_cls=DiT, config_cls=DiTConfig):
    """The trained toy network (eval mode, CPU, float32), loaded strictly: a `DiT` by default."""
    config, _ = read_toy_metadata(path, config_cls)
    model = build_on_meta(model_cls, config)
    return load_into(model, read_state_dict(path), what=f"toy-model file {path}")


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _request(labels, model: DiT | None, steps: int, guidance: float, weights) -> tuple[torch.Tensor, DiT]:
    """Check a sampling request: (labels (N,) int64, the model, the shipped `weights` by default). Labels
    must be integers (True or 1.7 are refused, not cast), steps an integer in 1..1000, guidance a finite
    number >= 0 (`pipelines/checks.py`); all before the weights are read."""
    labels = _integer_labels(labels)
    if len(labels) == 0:
        raise InputError("labels is empty: pass at least one digit, e.g. sample_digits([3])")
    check_steps(steps, "steps", maximum=NUM_TIMESTEPS)
    guidance = check_guidance(guidance, "guidance")
    model = load_toy_model(weights) if model is None else model
    num_classes = model.config.num_classes
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be digits 0..{num_classes - 1}, got {labels.tolist()}")
    if guidance != 1.0 and model.config.class_dropout_prob == 0:
        raise ValueError("this model has no null class (class_dropout_prob=0): use guidance=1")
    return labels, model.eval()


def _integer_labels(labels) -> torch.Tensor:
    """labels (an int, a list of ints, an integer tensor or array) -> (N,) int64; anything else refused."""
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise InputError(f"labels must be integers, got a {labels.dtype} tensor")
        return labels.reshape(-1).long()
    values = [labels] if is_integer(labels) or isinstance(labels, (bool, float, str)) else labels
    if not isinstance(values, (list, tuple, range)) and not hasattr(values, "tolist"):
        raise InputError(f"labels must be an integer or a list of integers, got {labels!r}")
    values = values.tolist() if hasattr(values, "tolist") else list(values)
    bad = [v for v in values if not is_integer(v)]
    if bad:
        raise InputError(f"labels must be integers (digits 0..9), got {bad[0]!r} ({type(bad[0]).__name__})")
    return torch.tensor(values, dtype=torch.long)


def _class_model_fn(model: DiT, labels: torch.Tensor, guidance: float):
    """model_fn(x_t, t) for the sampler: the class-conditional model, guided unless guidance = 1."""
    if guidance == 1.0:                                                      # one forward per step
        return lambda x_t, t: model(x_t, t, labels)
    # one call on [x_t, x_t] with labels [y, null]; every prediction channel (1 here) is guided: the
    # official DiT default (the first 3 channels) only makes sense for DiT's 4-channel latents
    y = torch.cat([labels, torch.full_like(labels, model.config.num_classes)])
    return guided_model_fn(lambda x2, t2: model(x2, t2, y), guidance)


def _sample(model: DiT, labels, seed: int, sampler: Sampler, steps: int, guidance: float, progress: bool):
    """x_T from `seed` (one generator also draws every step's noise) -> sampler -> images in [0, 1]."""
    C, S = model.config.in_channels, model.config.input_size
    generator = torch.Generator().manual_seed(seed)
    x_T = initial_noise((len(labels), C, S, S), generator, "cpu")                 # (N, 1, H, W)
    x_0 = sampler.run(_class_model_fn(model, labels, guidance), x_T, steps, learn_sigma=model.config.learn_sigma,
                      generator=generator, progress=progress)
    return ((x_0.clamp(-1, 1) + 1) / 2).float()                               # (N, 1, H, W)


def sample_digits(labels, seed: int = 0, *, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                  sampler: str = "ddpm", model: DiT | None = None, progress: bool = False) -> torch.Tensor:
    """Draw one digit per entry of `labels` (ints 0..9) -> (N, 1, 16, 16) float32 in [0, 1].

    Deterministic given `seed` (one torch.Generator draws x_T and every step's noise) and the
    labels; the same seed with other labels gives other noise per position only through the
    labels. `steps`: respaced sampling steps (1..1000). `guidance`: CFG scale (1 = no guidance,
    one forward per step instead of two). `sampler`: "ddpm" (ancestral, learned variances) or
    "ddim" (eta = 0). `model`: defaults to the shipped weights. (The flow toy: `sample_flow_digits`.)
    """
    check_seed(seed, "seed")
    if sampler not in ("ddpm", "ddim"):
        raise InputError(f"unknown sampler {sampler!r}: use 'ddpm' or 'ddim' (the flow toy: sample_flow_digits)")
    labels, model = _request(labels, model, steps, guidance, WEIGHTS)
    learned = model.config.learn_sigma
    sampler = Sampler(sampler, variance="learned_range" if learned else "fixed_small", clip_denoised=True,
                      spacing="iddpm", num_train_timesteps=NUM_TIMESTEPS, beta_schedule=BETA_SCHEDULE)
    return _sample(model, labels, seed, sampler, steps, guidance, progress)


def sample_flow_digits(labels, seed: int = 0, *, steps: int = FLOW_DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
                       sampler: str = "euler", shift: float = 1.0, model: DiT | None = None,
                       progress: bool = False) -> torch.Tensor:
    """`sample_digits` for the rectified-flow toy (`FLOW_WEIGHTS`): the flow ODE from sigma = 1 to 0
    on `grid.flow_grid(steps, shift)` (the model is fed sigma * 1000), no noise after x_T.

    `sampler`: "euler" (SD3's default, diffusers' FlowMatchEulerDiscreteScheduler) or "dpm_solver++"
    (2M on the same points, alpha = 1 - sigma). Deterministic given `seed`."""
    check_seed(seed, "seed")
    if not isinstance(shift, (int, float)) or isinstance(shift, bool) or not math.isfinite(shift) or shift <= 0:
        raise InputError(f"shift must be a finite number > 0, got {shift!r}")
    if sampler not in ("euler", "dpm_solver++"):
        raise InputError(f"unknown sampler {sampler!r}: use 'euler' or 'dpm_solver++' (DDPM: sample_digits)")
    labels, model = _request(labels, model, steps, guidance, FLOW_WEIGHTS)
    sampler = Sampler(sampler, prediction_type="flow", spacing="flow", shift=shift, num_train_timesteps=NUM_TIMESTEPS)
    return _sample(model, labels, seed, sampler, steps, guidance, progress)


def save_grid(images: torch.Tensor, path, ncols: int, zoom: int = 4, pad: int = 2) -> None:
    """Write (N, 1, H, W) grey or (N, 3, H, W) RGB images in [0, 1] as one PNG, row-major, `ncols` per
    row, each enlarged `zoom` times (nearest neighbour: the model's pixels, not a smoothed version). The
    folder must exist (nothing is created: `pipelines/checks.check_output_path`)."""
    from PIL import Image
    check_output_path(path, "path")
    N, C, H, W = images.shape
    if C not in (1, 3):
        raise InputError(f"save_grid writes grey (N, 1, H, W) or RGB (N, 3, H, W) images, got {C} channels")
    nrows = -(-N // ncols)
    cell_h, cell_w = H * zoom + pad, W * zoom + pad
    canvas = torch.ones(C, nrows * cell_h + pad, ncols * cell_w + pad) * 0.5            # grey frame
    big = images.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)         # (N, C, H*z, W*z)
    for i in range(N):
        r, c = divmod(i, ncols)
        canvas[:, pad + r * cell_h: pad + r * cell_h + H * zoom, pad + c * cell_w: pad + c * cell_w + W * zoom] = big[i]
    pixels = (canvas.clamp(0, 1) * 255).round().byte()
    if C == 1:
        Image.fromarray(pixels[0].numpy(), mode="L").save(path)
    else:
        Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), mode="RGB").save(path)


def _parse_classes(text: str) -> list[int]:
    try:
        classes = [int(c) for c in text.split(",") if c.strip() != ""]
    except ValueError:
        classes = []
    if not classes or any(not 0 <= c <= 9 for c in classes):
        raise InputError(f"--classes must be comma-separated digits 0..9 (e.g. 0,1,7), got {text!r}")
    return classes


def add_sample_arguments(parser) -> None:
    """The options of `python -m minidit sample`; defaults are `sample_digits`' own."""
    defaults = {k: p.default for k, p in inspect.signature(sample_digits).parameters.items()}
    parser.add_argument("--classes", type=str, default="0,1,2,3,4,5,6,7,8,9",
                        help="comma-separated digits, one grid column each (default: all ten)")
    parser.add_argument("--count", type=int, default=4, help="samples per digit, the grid's rows (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults["steps"],
                        help="respaced DDPM steps, 1..1000 (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=defaults["guidance"],
                        help="classifier-free guidance scale, 1 = none (default: %(default)s)")
    parser.add_argument("--out", type=str, default="digits.png", help="output PNG path (default: %(default)s)")


def cli_sample(args) -> int:
    """`python -m minidit sample`: a grid with one column per class and `count` rows."""
    try:                                                      # every option, before the weights are read
        check_output_path(args.out)
        check_seed(args.seed)
        check_count(args.count, "--count")
        check_steps(args.steps, "--steps", maximum=NUM_TIMESTEPS)
        check_guidance(args.guidance, "--guidance")
        classes = _parse_classes(args.classes)
        labels = classes * args.count                         # row r holds every class once
        t0 = time.perf_counter()
        images = sample_digits(labels, seed=args.seed, steps=args.steps, guidance=args.guidance, progress=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_grid(images, args.out, ncols=len(classes))
    print(f"wrote {args.out}: {len(labels)} digits ({args.count} x {classes}), {args.steps} DDPM steps, "
          f"guidance {args.guidance}, seed {args.seed}, {time.perf_counter() - t0:.1f} s")
    return 0
