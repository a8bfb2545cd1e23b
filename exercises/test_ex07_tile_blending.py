"""Grader for exercise 7: python -m pytest exercises/test_ex07_tile_blending.py"""
import torch
import torch.nn.functional as F

from exercises._grading import check_close, check_shape, load
from minidit.tiling import tiled_apply as reference_tiled_apply

ex = load("ex07_tile_blending")


def test_ramp_by_hand():
    check_close(ex.blend_ramp(6, 2, 0), torch.tensor([1 / 3, 2 / 3, 1, 1, 1, 1]), "blend_ramp(6, 2, 0)",
                mistakes={"The rising ramp is x / left, so the first pixel gets weight 0: use (x + 1) / (left + 1).":
                              torch.tensor([0, 1 / 2, 1, 1, 1, 1]),
                          "The rising ramp is (x + 1) / left: divide by left + 1, so that it stays below 1 and "
                          "the two ramps of an overlap sum to 1.": torch.tensor([1 / 2, 1, 1, 1, 1, 1])})
    check_close(ex.blend_ramp(5, 0, 3), torch.tensor([1, 1, 3 / 4, 2 / 4, 1 / 4]), "blend_ramp(5, 0, 3)",
                mistakes={"The falling ramp is reversed or off by one: it is (size - x) / (right + 1), "
                          "1/(right+1) on the last pixel.": torch.tensor([1, 3 / 4, 2 / 4, 1 / 4, 0]),
                          "The falling ramp is (size - x) / right: divide by right + 1.":
                              torch.tensor([1, 1, 1, 2 / 3, 1 / 3])})
    check_close(ex.blend_ramp(4, 0, 0), torch.ones(4), "blend_ramp(4, 0, 0) (no neighbours)")


def test_overlapping_ramps_sum_to_one():
    for n in (1, 3, 8):
        falling = ex.blend_ramp(12, 0, n)[-n:]
        rising = ex.blend_ramp(12, n, 0)[:n]
        check_close(falling + rising, torch.ones(n), f"the two ramps over an overlap of {n} pixels, summed (the "
                    "weights of two overlapping tiles must sum to 1: rising (x + 1) / (n + 1), falling "
                    "(size - x) / (n + 1))")


def test_tiled_output_shape():
    x = torch.randn(2, 3, 20, 28)
    out = ex.tiled_apply(lambda t: F.interpolate(t, scale_factor=8, mode="nearest"), x, 8, 2, 8)
    check_shape(out, (2, 3, 160, 224), "tiled_apply(upsample x8, x of shape (2, 3, 20, 28), tile 8)")


def test_blending_identical_tiles_gives_them_back():
    """A position-independent fn gives the same values in every tile: the blend must be exact."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 21, 30)
    fn = lambda t: F.interpolate(t, scale_factor=8, mode="nearest") * 2 - 1   # noqa: E731
    check_close(ex.tiled_apply(fn, x, 8, 3, 8), fn(x), "tiled nearest-upsampling vs untiled")


def test_one_tile_is_untouched():
    x = torch.randn(1, 3, 8, 8)
    fn = lambda t: t - t.mean()   # noqa: E731  (depends on the whole input)
    out = ex.tiled_apply(fn, x, 8, 2, 1)
    assert torch.equal(out, fn(x)), "an input no larger than one tile must give exactly fn(x)"


def test_matches_minidit_on_a_nonlocal_function():
    """fn depends on the whole tile (like a VAE's GroupNorm): tiles disagree, the blend decides."""
    torch.manual_seed(1)
    x = torch.randn(2, 3, 30, 22)
    fn = lambda t: F.interpolate(t - t.mean(dim=(2, 3), keepdim=True), scale_factor=2)   # noqa: E731
    check_close(ex.tiled_apply(fn, x, 12, 4, 2), reference_tiled_apply(fn, x, 12, 4, 2),
                "tiled_apply vs minidit.tiling.tiled_apply")
