"""Resolution binning: PixArt's aspect-ratio buckets, and the resize + centre crop back.

PixArt-α/Σ were trained on multi-aspect buckets (PixArt-α §2.4 / PixArt-Σ §4: "multi-scale"
training, the `-MS` in the checkpoint names): every training image was resized to the bucket whose
height/width ratio is closest to its own. A size outside the buckets gives the network token grids
it never saw, and garbled pictures. So the pipelines (diffusers' `use_resolution_binning`, on by
default) generate at the nearest bucket and resize the picture to the size that was asked for.

The tables (data: PixArt-sigma `diffusion/data/datasets/utils.py`; diffusers
`pipelines/pixart_alpha/pipeline_pixart_{alpha,sigma}.py`) are ONE table in different units:
`ASPECT_RATIO_1024` below, multiplied by side / 1024. The official file has two versions per side:
the 40 training buckets (`ASPECT_RATIO_{256,512,1024,2048}`) and 33 "test" buckets
(`..._TEST`: without the ratios 0.26, 0.27, 2.89, 3.11, 3.62, 3.75, 3.88). diffusers' bins
(`ASPECT_RATIO_{256,512,1024}_BIN`) are the 33 test buckets; its `ASPECT_RATIO_2048_BIN` is the
full 40-bucket training table. `inference_bins(side)` reproduces exactly those four tables.

Every bucket at 1024 has 90-100 % of 1024² pixels and sides that are multiples of 64,
so a bucket's latent (side / 8) always splits into 2 x 2 patches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# ratio (height / width, as the official string key) -> (height, width) in pixels, training side 1024
ASPECT_RATIO_1024: dict[str, tuple[int, int]] = {
    "0.25": (512, 2048), "0.26": (512, 1984), "0.27": (512, 1920), "0.28": (512, 1856),
    "0.32": (576, 1792), "0.33": (576, 1728), "0.35": (576, 1664), "0.4": (640, 1600),
    "0.42": (640, 1536), "0.48": (704, 1472), "0.5": (704, 1408), "0.52": (704, 1344),
    "0.57": (768, 1344), "0.6": (768, 1280), "0.68": (832, 1216), "0.72": (832, 1152),
    "0.78": (896, 1152), "0.82": (896, 1088), "0.88": (960, 1088), "0.94": (960, 1024),
    "1.0": (1024, 1024), "1.07": (1024, 960), "1.13": (1088, 960), "1.21": (1088, 896),
    "1.29": (1152, 896), "1.38": (1152, 832), "1.46": (1216, 832), "1.67": (1280, 768),
    "1.75": (1344, 768), "2.0": (1408, 704), "2.09": (1472, 704), "2.4": (1536, 640),
    "2.5": (1600, 640), "2.89": (1664, 576), "3.0": (1728, 576), "3.11": (1792, 576),
    "3.62": (1856, 512), "3.75": (1920, 512), "3.88": (1984, 512), "4.0": (2048, 512),
}
# The 7 training ratios the official `_TEST` tables (and diffusers' 256/512/1024 bins) leave out.
NOT_IN_TEST_TABLES = ("0.26", "0.27", "2.89", "3.11", "3.62", "3.75", "3.88")
SIDES = (256, 512, 1024, 2048)


def aspect_ratio_table(side: int, test: bool = False) -> dict[str, tuple[int, int]]:
    """The official buckets for the training side 256 / 512 / 1024 / 2048 (the 40 training buckets,
    or the 33 `_TEST` ones), in ascending ratio order."""
    if side not in SIDES:
        raise ValueError(f"PixArt's aspect-ratio tables exist for sides {SIDES}, not {side}")
    return {r: (h * side // 1024, w * side // 1024) for r, (h, w) in ASPECT_RATIO_1024.items()
            if not (test and r in NOT_IN_TEST_TABLES)}


def inference_bins(side: int) -> dict[str, tuple[int, int]]:
    """The bins diffusers' PixArt pipelines snap to: the test buckets, the full table at 2048."""
    return aspect_ratio_table(side, test=side != 2048)


def classify_height_width_bin(height: int, width: int, bins: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose ratio (the table's rounded key) is closest to height / width; on a tie the
    first one in table order (the smaller ratio), as diffusers' `min` over the keys."""
    ratio = height / width
    key = min(bins, key=lambda r: abs(float(r) - ratio))
    return bins[key]


def resize_and_crop(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, height, width): scale by the larger of height/h, width/w (bilinear,
    align_corners=False, no antialiasing) so the target is covered, then cut the centre out.

    Same arithmetic as diffusers' `PixArtImageProcessor.resize_and_crop_tensor` (sizes truncated
    with int(), crop offsets floored), with one fix: int(w * (width / w)) can land one pixel short of
    `width` in floating point (e.g. w = 176, width = 49), where diffusers returns a narrower image;
    here a scaled side is never smaller than the side it must cover.
    """
    h, w = images.shape[-2:]
    if (h, w) == (height, width):
        return images
    ratio = max(height / h, width / w)
    new_h, new_w = max(int(h * ratio), height), max(int(w * ratio), width)
    images = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return images[..., top:top + height, left:left + width]
