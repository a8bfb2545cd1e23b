"""Writing a video: an animated GIF or WebP, or one PNG with every frame in a grid (Pillow only).

    save_video(frames, "clip.gif", fps=8)      # .gif / .webp: animated; any other image file: the frame grid
    frame_grid(frames, columns=4)              # a PIL image, frames left to right, top to bottom

`frames` is one video: a list of PIL images (what the video pipelines return per video), of uint8
arrays (H, W, 3), or one uint8 array (F, H, W, 3).

What survives the round trip (tests/test_video_output.py measures it):
  * WebP, lossless (the default here): every pixel of every frame exactly.
  * GIF: 256 colours per frame. Pillow turns each RGB frame into a palette image (median cut), so a
    frame with at most 256 distinct colours comes back exactly and one with more (any real video
    frame) comes back with its colours rounded to the palette: close, not equal. There is no lossless
    GIF of a photographic frame.
  * PNG grid: exact (lossless), frame i at row i // columns, column i % columns.
  * Timing: GIF stores durations in hundredths of a second, so 8 fps (125 ms) plays at 120 or 130 ms
    per frame; WebP stores milliseconds.
  * Frame count: both Pillow writers merge a frame identical to the one before it into that one
    (adding its duration), so a video with repeated frames has fewer frames in the file and plays the
    same. Distinct frames are all kept.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from minidit.errors import InputError

ANIMATED = (".gif", ".webp")


def as_images(frames) -> list[Image.Image]:
    """PIL images or uint8 arrays (H, W, 3), or a uint8 array (F, H, W, 3) -> RGB PIL images (all the same size)."""
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8):
        raise InputError(f"frames must be a uint8 array (F, H, W, 3), got {frames.dtype} {frames.shape}")
    images = [_image(f) for f in frames]
    if not images or not all(isinstance(im, Image.Image) for im in images):
        raise InputError("frames must be a non-empty list of PIL images (one video of the pipeline's output)")
    if len({im.size for im in images}) != 1:
        raise InputError(f"every frame must have the same size, got {sorted({im.size for im in images})}")
    return [im.convert("RGB") for im in images]


def _image(frame):
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[-1] == 3 and frame.dtype == np.uint8:
        return Image.fromarray(frame)
    return frame


def frame_duration_ms(fps: float) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 100:
        raise InputError(f"fps must be a number in (0, 100], got {fps!r}")
    return round(1000 / fps)


def save_gif(frames, path, fps: float = 8, loop: int = 0) -> Path:
    """An animated GIF (256 colours per frame, see the module docstring), looping forever by default."""
    images = as_images(frames)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_duration_ms(fps), loop=loop)
    return Path(path)


def save_webp(frames, path, fps: float = 8, lossless: bool = True, quality: int = 90) -> Path:
    """An animated WebP: lossless by default (exact pixels), else lossy at `quality`."""
    images = as_images(frames)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_duration_ms(fps), loop=0,
                   lossless=lossless, quality=quality)
    return Path(path)


def frame_grid(frames, columns: int | None = None) -> Image.Image:
    """Every frame in one image, `columns` per row (default: ceil(sqrt(F)), 4 for 16 frames)."""
    images = as_images(frames)
    n = len(images)
    columns = math.ceil(math.sqrt(n)) if columns is None else columns
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise InputError(f"columns must be a positive integer, got {columns!r}")
    columns = min(columns, n)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, math.ceil(n / columns) * h))
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    return grid


def save_video(frames, path, fps: float = 8, columns: int | None = None) -> Path:
    """By the file's extension: .gif / .webp an animation, any other image file (.png, ...) the frame grid."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return save_gif(frames, path, fps)
    if suffix == ".webp":
        return save_webp(frames, path, fps)
    frame_grid(frames, columns).save(path)
    return path
