"""The built-in video model: a tiny spacetime DiT that moves a requested digit in a requested direction.

`python -m minidit sample-video --digit 3 --direction right --out clip.gif` runs it offline: the
weights (`minidit/assets/toy_video.safetensors`, < 2 MB) ship with the package and
`scripts/train_toy_video.py` reproduces them on a CPU in minutes with the project's own code.

Data (`pipelines/moving_digits.py`): clips of FRAMES = 8 frames on a 16x16 canvas, one of
scikit-learn's real 8x8 digits moving 1 pixel per frame right, left, down or up on a straight path,
in pixel space [-1, 1] (no VAE). The condition is (digit 0..9, direction 0..3).

Model (`minidit/video_dit.py`, `TOY_VIDEO`): tubelets of 1 frame x 4 x 4 pixels, so a clip is
8 x 16 = 128 tokens; width 64, 4 DiT blocks with adaLN-Zero, alternating spatial attention (inside a
frame, 16 tokens) and temporal attention (across the 8 frames at one position): the factorized
pattern of Latte and Open-Sora. `TOY_VIDEO_FULL` is the same network attending over all 128 tokens at
once (the same parameters); `benchmarks/results/toy_video_attention.txt` compares the two at equal
budget. Objective: rectified flow (SD3's, as the flow digits toy): the velocity eps - x0 on the
straight path, logit-normal sigma, Euler sampling on `grid.flow_grid`; guidance on the joint
(digit, direction) condition, whose null rows the training's joint dropout (10 %) taught.

Quality is measured, not looked at (`tests/test_toy_video.py`, `moving_digits.evaluate`): the
project's digit classifier must recognise the requested digit in the tracked 8x8 crop of >= 90 % of
the frames, and the tracked centre of the ink must move the requested way in >= 90 % of the clips.
Measured on 120 clips (every digit x direction x 3) at the defaults: 92.4 % of the frames and 100 % of
the clips (chance: 10 % of the frames). The shipped run, every part on a CPU with batch 64 (15 211
steps in all, 99 min): 1200 steps at lr 4e-3 (the factorized arm of the attention comparison), then,
each continuing the last (`--init`), 1200 at 2e-3 (79 % of the frames), 1811 with the LR decaying to
0 (`--minutes 13`: 84 %), 6000 at 1e-3 decaying to 0 (89 %), 5000 at 5e-4 decaying to 0 (92 %). It
learns the motion first and the strokes slowly (the loss went from 0.127 to 0.070). Its record,
every run: the file's metadata (`read_video_metadata`).

Shape legend: N clips, F frames, H = W = 16 pixels; clips (N, F, H, W) in [0, 1]; the model's
(N, 1, F, H, W) in [-1, 1].
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from minidit.errors import InputError
from minidit.samplers import Sampler
from minidit.video_dit import VideoDiT, VideoDiTConfig
from .checks import check_count, check_guidance, check_output_path, check_seed, check_steps
from .common import guided_model_fn, initial_noise
from .moving_digits import CANVAS, DIRECTIONS, FRAMES, direction_index, model_to_clips
from .toy import NUM_TIMESTEPS, _integer_labels, load_toy_model, read_toy_metadata, save_grid
from . import video_output

WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "toy_video.safetensors"
TOY_VIDEO = VideoDiTConfig(input_size=CANVAS, num_frames=FRAMES, patch_size=4, temporal_patch_size=1, in_channels=1,
                           hidden_size=64, depth=4, num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1,
                           num_classes=10, num_motions=len(DIRECTIONS), attention="factorized", learn_sigma=False)
TOY_VIDEO_FULL = replace(TOY_VIDEO, attention="full")     # the same parameters, one attention over all tokens
DEFAULT_STEPS = 20                   # Euler steps
DEFAULT_GUIDANCE = 4.0               # CFG on (digit, direction)


def read_video_metadata(path=WEIGHTS) -> tuple[VideoDiTConfig, dict]:
    """(config, training record) stored in a video-toy file (`scripts/train_toy_video.py` writes them)."""
    return read_toy_metadata(path, VideoDiTConfig)


def load_video_model(path=WEIGHTS) -> VideoDiT:
    """The trained video toy (eval mode, CPU, float32), loaded strictly."""
    return load_toy_model(path, VideoDiT, VideoDiTConfig)


def _directions(directions, n: int) -> torch.Tensor:
    """A direction name / index, or one per clip -> (n,) int64."""
    values = [directions] if isinstance(directions, (str, int)) else list(directions)
    values = [direction_index(d) for d in values]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise InputError(f"give one direction for all clips or one per clip: {n} digits, {len(values)} directions")
    return torch.tensor(values, dtype=torch.long)


def sample_video(digits, directions="right", seed: int = 0, *, steps: int = DEFAULT_STEPS,
                 guidance: float = DEFAULT_GUIDANCE, model: VideoDiT | None = None,
                 progress: bool = False) -> torch.Tensor:
    """One clip per entry of `digits` (ints 0..9) moving in `directions` ('right' | 'left' | 'down' |
    'up' or 0..3; one for all or one per clip) -> (N, F, H, W) float32 in [0, 1].

    Rectified flow from sigma = 1 to 0 in `steps` Euler steps (the model sees 1000 sigma), guided with
    scale `guidance` (1 = none: one forward per step). Deterministic given `seed` (x_T is drawn from one
    torch.Generator). `model`: defaults to the shipped weights."""
    check_seed(seed, "seed")
    digits = _integer_labels(digits)
    if len(digits) == 0:
        raise InputError("digits is empty: pass at least one, e.g. sample_video([3], 'right')")
    motions = _directions(directions, len(digits))
    check_steps(steps, "steps", maximum=NUM_TIMESTEPS)
    guidance = check_guidance(guidance, "guidance")
    model = (load_video_model() if model is None else model).eval()
    cfg = model.config
    if digits.min() < 0 or digits.max() >= cfg.num_classes:
        raise InputError(f"digits must be 0..{cfg.num_classes - 1}, got {digits.tolist()}")

    if guidance == 1.0:
        model_fn = lambda x_t, t: model(x_t, t, digits, motions)            # noqa: E731
    else:            # one call on [x_t, x_t] with conditions [(digit, direction), (null, null)]
        y = torch.cat([digits, torch.full_like(digits, cfg.num_classes)])
        m = torch.cat([motions, torch.full_like(motions, cfg.num_motions)])
        model_fn = guided_model_fn(lambda x2, t2: model(x2, t2, y, m), guidance)
    generator = torch.Generator().manual_seed(seed)
    shape = (len(digits), cfg.in_channels, cfg.num_frames, cfg.input_size, cfg.input_size)
    x_T = initial_noise(shape, generator, "cpu")                               # (N, 1, F, H, W)
    sampler = Sampler("euler", prediction_type="flow", spacing="flow", num_train_timesteps=NUM_TIMESTEPS)
    with torch.no_grad():
        x_0 = sampler.run(model_fn, x_T, steps, generator=generator, progress=progress)
    return model_to_clips(x_0)                                                  # (N, F, H, W)


# --------------------------------------------------------------------------------------------
# Writing clips: an animated GIF and a frame grid (small functions, to be swapped for the video
# pipeline's writer)
# --------------------------------------------------------------------------------------------


def save_gif(clips: torch.Tensor, path, zoom: int = 8, fps: float = 8, pad: int = 2) -> None:
    """Write (N, F, H, W) clips in [0, 1] as one looping animated GIF, the N clips side by side on a grey
    frame, each pixel `zoom` x `zoom` (nearest neighbour), `fps` frames a second (`video_output.save_gif`,
    the writer of the video pipelines). The folder must exist."""
    check_output_path(path, "path")
    N, Fr, H, W = clips.shape
    canvas = torch.full((Fr, H * zoom + 2 * pad, N * (W * zoom + pad) + pad), 0.5)         # grey frame
    big = clips.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)              # (N, F, H*z, W*z)
    for i in range(N):
        x = pad + i * (W * zoom + pad)
        canvas[:, pad: pad + H * zoom, x: x + W * zoom] = big[i]
    grey = (canvas * 255).round().byte()                                                  # (F, H', W')
    video_output.save_gif(grey[..., None].expand(*grey.shape, 3).contiguous().numpy(), path, fps)


def save_frame_grid(clips: torch.Tensor, path, zoom: int = 4) -> None:
    """Write (N, F, H, W) clips in [0, 1] as a PNG grid: one row per clip, one column per frame."""
    N, Fr, H, W = clips.shape
    save_grid(clips.reshape(N * Fr, 1, H, W), path, ncols=Fr, zoom=zoom)


# --------------------------------------------------------------------------------------------
# python -m minidit sample-video
# --------------------------------------------------------------------------------------------


def add_sample_video_arguments(parser) -> None:
    """The options of `python -m minidit sample-video`; defaults are `sample_video`'s own."""
    parser.add_argument("--digit", type=int, default=3, help="the digit to move, 0..9 (default: %(default)s)")
    parser.add_argument("--direction", type=str, default="right", choices=DIRECTIONS,
                        help="where it moves (default: %(default)s)")
    parser.add_argument("--count", type=int, default=1, help="clips, side by side in the GIF (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Euler steps, 1..1000 (default: %(default)s)")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                        help="classifier-free guidance scale, 1 = none (default: %(default)s)")
    parser.add_argument("--out", type=str, default="clip.gif", help="the animated GIF (default: %(default)s)")
    parser.add_argument("--grid", type=str, default=None,
                        help="also write the frames as a PNG grid, one row per clip (default: none)")


def cli_sample_video(args) -> int:
    """`python -m minidit sample-video`: `count` clips of one digit moving one way, as a GIF (+ a grid)."""
    try:                                                      # every option, before the weights are read
        check_output_path(args.out)
        if Path(args.out).suffix.lower() != ".gif":
            raise InputError(f"--out {args.out}: the clip is written as an animated GIF; name it *.gif "
                             f"(--grid writes the frames as a PNG)")
        if args.grid is not None:
            check_output_path(args.grid, "--grid")
        check_seed(args.seed)
        check_count(args.count, "--count")
        check_steps(args.steps, "--steps", maximum=NUM_TIMESTEPS)
        check_guidance(args.guidance, "--guidance")
        if not 0 <= args.digit <= 9:
            raise InputError(f"--digit must be 0..9, got {args.digit}")
        t0 = time.perf_counter()
        clips = sample_video([args.digit] * args.count, args.direction, seed=args.seed, steps=args.steps,
                             guidance=args.guidance, progress=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_gif(clips, args.out)
    if args.grid is not None:
        save_frame_grid(clips, args.grid)
    also = f" and {args.grid}" if args.grid is not None else ""
    print(f"wrote {args.out}{also}: {args.count} clip(s) of a {args.digit} moving {args.direction}, "
          f"{FRAMES} frames, {args.steps} Euler steps, guidance {args.guidance}, seed {args.seed}, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
