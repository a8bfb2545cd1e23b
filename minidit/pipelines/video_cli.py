"""`python -m minidit generate --model latte-1 --weights DIR --prompt "..." --frames 16 --out clip.gif`.

The video family's command line: its rows (`MODELS`), its options (`add_arguments`: --frames, --fps,
--grid) and its run function (`generate`). --out chooses the file: .gif / .webp an animation, any other
image file (.png) the frame grid (`video_output.save_video`). Steps and guidance default to the
pipeline's `__call__`. Every option, --frames included, is checked before any weight is read: the frame
counts each model takes are in its row (`VideoModel.frames`).

Adding a family (Open-Sora 1.0 / 1.2, once its pipeline exists): a `VideoModel` row with its pipeline
class (a `VideoPipeline` with `from_pretrained(folder, dtype=, device=)`) and frame counts. Nothing else here changes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from minidit.errors import InputError
from weights_loader.errors import CheckpointError
from .checks import check_int, check_output_path, check_prompts
from .common import ModelEntry, call_defaults, default_device, text_arguments_error
from .memory import format_stats
from .video import LattePipeline
from .video_output import frame_duration_ms, save_video

FAMILY = "video"
TITLE = "text-to-video models (Latte-1)"


@dataclass(frozen=True)
class VideoModel(ModelEntry):
    """A video row: the table's fields, plus the pipeline class and the frame counts the model takes."""
    pipeline: type = LattePipeline
    frames: tuple[int, ...] = (16,)


MODELS = (
    VideoModel("latte-1", FAMILY, "Latte-1 (PixArt-α blocks + temporal blocks, 1.06B) + T5-XXL (120 tokens) + "
               "sd-vae-ft-ema per frame, 16 frames 512x512", 512, "maxin-cn/Latte-1", "",
               pipeline=LattePipeline, frames=(16, 1)),
)


def add_arguments(group) -> None:
    group.add_argument("--frames", type=int, default=None,
                       help="frames to generate (default: the model's own; latte-1: 16, or 1 for an image)")
    group.add_argument("--fps", type=float, default=8, help="frames per second of the GIF / WebP (default: %(default)s)")
    group.add_argument("--grid", type=str, default=None, help="also write every frame in one image (a .png file)")


def defaults(entry: VideoModel) -> dict:
    d = call_defaults(entry.pipeline.__call__)
    return {"steps": d["num_inference_steps"], "guidance": d["guidance_scale"]}


def how_to_get(entry: VideoModel) -> str:
    local = entry.repo.split("/")[1]
    return (f"Get the {entry.name} weights (T5-XXL included, about 20 GB) with\n"
            f"  huggingface-cli download {entry.repo} --local-dir {local}\n"
            f"  python -m minidit generate --model {entry.name} --weights {local} --prompt \"...\" --out clip.gif")


def check_arguments(args, entry: VideoModel) -> int:
    """The video options, refused (InputError) before any weight is read; returns the frame count."""
    frames = entry.frames[0] if args.frames is None else check_int(args.frames, "--frames", minimum=1)
    if frames not in entry.frames:
        raise InputError(f"--frames {frames}: {entry.name} makes {' or '.join(map(str, entry.frames))} frames "
                         "(the length it was trained on; 1 = an image)")
    frame_duration_ms(args.fps)
    if args.grid is not None:
        check_output_path(args.grid, "--grid")
    return frames


def generate(args, entry: VideoModel, call_kwargs: dict) -> int:
    """Run `generate` for a video row whose --weights exist: load, one seeded run, the video to --out."""
    problem = text_arguments_error(args, entry.name)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    check_prompts(args.prompt, "--prompt")
    frames = check_arguments(args, entry)        # (cli.py ran it already, before looking at --weights)
    device = default_device(args.device)
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    try:
        pipe = entry.pipeline.from_pretrained(Path(args.weights), dtype=dtype, device=device)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"{e}\n\n{how_to_get(entry)}", file=sys.stderr)
        return 2
    for option in ("negative_prompt", "height", "width"):
        if getattr(args, option, None) is not None:
            call_kwargs = {**call_kwargs, option: getattr(args, option)}
    try:
        video = pipe(args.prompt, num_frames=frames, generator=torch.Generator().manual_seed(args.seed),
                     **call_kwargs)[0]
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    out = save_video(video, args.out, fps=args.fps)
    if args.grid is not None:
        save_video(video, args.grid)
    print(f"wrote {out} ({len(video)} frames, {video[0].size[0]}x{video[0].size[1]})"
          + (f" and {args.grid}" if args.grid else ""))
    print(format_stats(pipe.last_run_stats))
    return 0
