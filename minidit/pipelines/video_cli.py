"""`python -m minidit generate --model latte-1|opensora-1.0-256|opensora-1.0-512|opensora-1.2 --weights DIR
--prompt "..." --frames 16 --out clip.gif`.

The video family's command line: its rows (`MODELS`), its options (`add_arguments`: --frames, --fps,
--grid) and its run function (`generate`). --out chooses the file: .gif / .webp an animation, any other
image file (.png) the frame grid (`video_output.save_video`). Steps and guidance default to the
pipeline's `__call__`. Every option, --frames included, is checked before any weight is read: the frame
counts each model takes are in its row (`VideoModel.frames`).

Adding a family: a `VideoModel` row with its pipeline class (a `VideoPipeline` with
`from_pretrained(folder, dtype=, device=)`), frame counts and, when its weights come from several
repositories (Open-Sora: the DiT, T5-XXL and the VAE), the download commands. Nothing else here changes.
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
from .opensora import OpenSora1Pipeline, OpenSora12Pipeline
from .video import LattePipeline
from .video_output import frame_duration_ms, save_video

FAMILY = "video"
TITLE = "text-to-video models (Latte-1, Open-Sora 1.0 / 1.2)"


@dataclass(frozen=True)
class VideoModel(ModelEntry):
    """A video row: the table's fields, plus the pipeline class and the frame counts the model takes."""
    pipeline: type = LattePipeline
    frames: tuple[int, ...] = (16,)        # the counts it takes, the default first
    frames_from: int = 0                   # > 0: also any count from this one up (Open-Sora 1.2: 17)
    negative_prompt: bool = True           # False: guided by the stored null caption (Open-Sora)
    get: tuple[str, ...] = ()              # download commands into the --weights folder DIR (several repositories)


def _opensora_1(side: int) -> VideoModel:
    name, pth = f"opensora-1.0-{side}", f"OpenSora-v1-HQ-16x{side}x{side}.pth"
    return VideoModel(
        name, FAMILY, f"Open-Sora 1.0 (STDiT-XL/2, 724M) + T5-XXL (120 tokens) + sd-vae-ft-ema per frame, 16 frames "
        f"{side}x{side}, IDDPM", side, "hpcai-tech/Open-Sora", pth, pipeline=OpenSora1Pipeline, frames=(16,),
        negative_prompt=False,
        get=(f"huggingface-cli download hpcai-tech/Open-Sora {pth} --local-dir DIR",
             "huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir DIR/t5-v1_1-xxl",
             "huggingface-cli download stabilityai/sd-vae-ft-ema --local-dir DIR/sd-vae-ft-ema"))


MODELS = (
    VideoModel("latte-1", FAMILY, "Latte-1 (PixArt-α blocks + temporal blocks, 1.06B) + T5-XXL (120 tokens) + "
               "sd-vae-ft-ema per frame, 16 frames 512x512", 512, "maxin-cn/Latte-1", "",
               pipeline=LattePipeline, frames=(16, 1)),
    _opensora_1(256),
    _opensora_1(512),
    VideoModel("opensora-1.2", FAMILY, "Open-Sora 1.2 (STDiT3-XL/2, 1.1B) + T5-XXL (300 tokens) + its video VAE "
               "(SDXL VAE + temporal VAE), 51 frames (1, or 17 and more) 512x512, rectified flow", 512,
               "hpcai-tech/OpenSora-STDiT-v3", "", pipeline=OpenSora12Pipeline, frames=(51, 1), frames_from=17,
               negative_prompt=False,
               get=("huggingface-cli download hpcai-tech/OpenSora-STDiT-v3 --local-dir DIR/OpenSora-STDiT-v3",
                    "huggingface-cli download hpcai-tech/OpenSora-VAE-v1.2 --local-dir DIR/OpenSora-VAE-v1.2",
                    "huggingface-cli download DeepFloyd/t5-v1_1-xxl --local-dir DIR/t5-v1_1-xxl")),
)


def add_arguments(group) -> None:
    group.add_argument("--frames", type=int, default=None,
                       help="frames to generate (default: the model's own; latte-1: 16, or 1 for an image; "
                            "opensora-1.0-*: 16; opensora-1.2: 51, or 1, or 17 and more)")
    group.add_argument("--fps", type=float, default=8, help="frames per second of the GIF / WebP (default: %(default)s)")
    group.add_argument("--grid", type=str, default=None, help="also write every frame in one image (a .png file)")


def defaults(entry: VideoModel) -> dict:
    d = call_defaults(entry.pipeline.__call__)
    return {"steps": d["num_inference_steps"], "guidance": d["guidance_scale"]}


def how_to_get(entry: VideoModel) -> str:
    if entry.get:
        local = entry.name
        lines = "\n".join("  " + line.replace("DIR", local) for line in entry.get)
        return (f"Get the {entry.name} weights (T5-XXL included, about 20 GB) into one folder with\n{lines}\n"
                f"  python -m minidit generate --model {entry.name} --weights {local} --prompt \"...\" --out clip.gif")
    local = entry.repo.split("/")[1]
    return (f"Get the {entry.name} weights (T5-XXL included, about 20 GB) with\n"
            f"  huggingface-cli download {entry.repo} --local-dir {local}\n"
            f"  python -m minidit generate --model {entry.name} --weights {local} --prompt \"...\" --out clip.gif")


def check_arguments(args, entry: VideoModel) -> int:
    """The video options, refused (InputError) before any weight is read; returns the frame count."""
    frames = entry.frames[0] if args.frames is None else check_int(args.frames, "--frames", minimum=1)
    if frames not in entry.frames and not (entry.frames_from and frames >= entry.frames_from):
        counts = " or ".join(map(str, sorted(set(entry.frames) - {entry.frames[0]} if entry.frames_from else
                                             entry.frames, reverse=True)))
        if entry.frames_from:
            counts = f"{counts} or {entry.frames_from} and more"
        raise InputError(f"--frames {frames}: {entry.name} makes {counts} frames "
                         "(the lengths it was trained for; 1 = an image)")
    if getattr(args, "negative_prompt", None) and not entry.negative_prompt:
        raise InputError(f"--negative-prompt: {entry.name} guides against its stored null caption, as its official "
                         "sampler; it takes no negative prompt")
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
