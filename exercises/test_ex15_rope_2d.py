"""Grader for exercise 15: python -m pytest exercises/test_ex15_rope_2d.py"""
import math

import pytest
import torch

from exercises._grading import EXACT, FP32, FP32_ELEMENTWISE, check_close, check_raises, check_shape, load
from minidit.embed import apply_rope as reference_apply_rope
from minidit.embed import get_2d_rope as reference_get_2d_rope
from minidit.embed import rotate_pairs as reference_rotate_pairs

ex = load("ex15_rope_2d")
HD = 12                       # head width: 6 channels (3 pairs) per axis; small, so index mix-ups show


def tables(head_dim, th, tw, base_size=32):
    out = ex.get_2d_rope(head_dim, th, tw, base_size)
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError("get_2d_rope should return a pair (cos, sin)")
    check_shape(out[0], (th * tw, head_dim), f"cos for a {th} x {tw} grid")
    check_shape(out[1], (th * tw, head_dim), f"sin for a {th} x {tw} grid")
    return out


def test_shapes():
    x = torch.randn(2, 3, 15, HD)
    check_shape(ex.rotate_pairs(x), x.shape, "rotate_pairs(x)")
    cos, sin = tables(HD, 3, 5)
    check_shape(ex.apply_rope(x, cos, sin), x.shape, "apply_rope(x, cos, sin)")


def test_rotate_pairs_by_hand():
    got = ex.rotate_pairs(torch.arange(8.0))
    expected = torch.tensor([-1.0, 0, -3, 2, -5, 4, -7, 6])
    if torch.equal(got, torch.tensor([-4.0, -5, -6, -7, 0, 1, 2, 3])):
        raise AssertionError("that is rotate-half (channel i paired with i + d/2); Hunyuan pairs 2i with 2i+1")
    check_close(got, expected, "rotate_pairs([0, 1, ..., 7])", tol=EXACT,
                mistakes={"The signs are swapped: each pair (a, b) becomes (-b, a), a multiplication by i.":
                          torch.tensor([1.0, 0, 3, -2, 5, -4, 7, -6])})
    x = torch.randn(4, 10)
    check_close(ex.rotate_pairs(ex.rotate_pairs(x)), -x, "rotate_pairs twice (a quarter turn twice: -x)", tol=EXACT)


def test_apply_rope_rotates_each_pair_by_its_angle():
    # hand-derived: the pair (1, 0) turned by phi is (cos phi, sin phi); pair (0, 2) becomes 2 (-sin, cos)
    phi = torch.tensor([0.3, 0.3, -1.2, -1.2])
    x = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
    got = ex.apply_rope(x, phi.cos()[None], phi.sin()[None])
    expected = torch.tensor([[math.cos(0.3), math.sin(0.3), -2 * math.sin(-1.2), 2 * math.cos(-1.2)]])
    backwards = torch.tensor([[math.cos(0.3), -math.sin(0.3), 2 * math.sin(-1.2), 2 * math.cos(-1.2)]])
    check_close(got, expected, "apply_rope on two pairs", tol=FP32_ELEMENTWISE,
                mistakes={"Your rotation turns the wrong way: x * cos + rotate_pairs(x) * sin.": backwards})


def test_apply_rope_keeps_lengths_and_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 15, HD, generator=g)
    cos, sin = reference_get_2d_rope(HD, 3, 5)
    out = ex.apply_rope(x, cos, sin)
    pair_norm = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)          # noqa: E731
    check_close(pair_norm(out), pair_norm(x), "the length of every pair (a rotation keeps it)", tol=FP32)
    half = ex.apply_rope(x.half(), cos, sin)
    assert half.dtype == torch.float16, f"apply_rope should return x's dtype (float16 here), got {half.dtype}"
    check_close(half, reference_apply_rope(x.half(), cos, sin), "apply_rope in float16 (computed in float32)",
                tol=1e-3)


def test_apply_rope_matches_minidit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 35, HD, generator=g)
    cos, sin = reference_get_2d_rope(HD, 5, 7)
    check_close(ex.apply_rope(x, cos, sin), reference_apply_rope(x, cos, sin), "apply_rope vs minidit", tol=FP32)
    check_close(ex.rotate_pairs(x), reference_rotate_pairs(x), "rotate_pairs vs minidit", tol=EXACT)


def test_the_1024_grid_by_hand():
    # 1024^2 = 64 x 64 tokens in the 32 x 32 box: positions 0, 0.5, ..., 31.5 on both axes;
    # token r * 64 + c has w = c / 2 (first half of the channels) and h = r / 2 (second half).
    cos, sin = tables(HD, 64, 64)
    half = torch.arange(64) * 0.5
    w, h = half.repeat(64), half.repeat_interleave(64)
    freqs = 1.0 / 10000 ** (torch.arange(0, HD // 2, 2, dtype=torch.float32) / (HD // 2))
    angles = torch.cat([torch.outer(w, freqs), torch.outer(h, freqs)], dim=1).repeat_interleave(2, dim=1)
    if torch.allclose(cos, torch.cat([torch.outer(h, freqs), torch.outer(w, freqs)], 1).repeat_interleave(2, 1).cos(),
                      atol=1e-5):
        raise AssertionError("the axes are swapped: the FIRST half of the channels turns with the column (w)")
    with_end = torch.linspace(0, 32, 64)
    w_end, h_end = with_end.repeat(64), with_end.repeat_interleave(64)
    wrong_freqs = 1.0 / 10000 ** (torch.arange(0, HD // 2, 2, dtype=torch.float32) / HD)
    mistakes = {
        "Your positions include the end of the box (0 .. 32): they exclude it, start + (stop - start) * "
        "arange(n) / n (0, 0.5, ..., 31.5 here).":
            torch.cat([torch.outer(w_end, freqs), torch.outer(h_end, freqs)], 1).repeat_interleave(2, 1).cos(),
        "Each angle must be repeated for the two channels of its pair (repeat_interleave(2, dim=1)), "
        "not the whole table tiled.": torch.cat([torch.outer(w, freqs).repeat(1, 2),
                                                 torch.outer(h, freqs).repeat(1, 2)], 1).cos(),
        "The frequencies of one axis use d = head_dim / 2, its share of the channels: 1 / 10000 ** "
        "(arange(0, d, 2) / d).": torch.cat([torch.outer(w, wrong_freqs), torch.outer(h, wrong_freqs)],
                                           1).repeat_interleave(2, 1).cos()}
    check_close(cos, angles.cos(), "cos at 1024^2 (64 x 64 tokens)", tol=FP32, mistakes=mistakes)
    check_close(sin, angles.sin(), "sin at 1024^2 (64 x 64 tokens)", tol=FP32)


@pytest.mark.parametrize("th, tw", [(48, 80), (80, 48), (40, 64), (7, 3), (1, 5)])
def test_non_square_grids_match_minidit(th, tw):
    # the shorter side is centred in the box: it starts at top (or left) > 0, and there the grid
    # must be start + (stop - start) * arange(n) / n (a linspace from start to stop*(n-1)/n is wrong)
    cos, sin = tables(HD, th, tw)
    ref_cos, ref_sin = reference_get_2d_rope(HD, th, tw)
    squeezed, _ = reference_get_2d_rope(HD, th, tw, convention="diffusers")
    check_close(cos, ref_cos, f"cos for a {th} x {tw} grid", tol=FP32,
                mistakes={"Your positions on the centred shorter side run from start to stop * (n - 1) / n (diffusers' "
                          "linspace): they are start + (stop - start) * arange(n) / n.": squeezed})
    check_close(sin, ref_sin, f"sin for a {th} x {tw} grid", tol=FP32)


def test_extend_grid_and_other_widths():
    for head_dim, th, tw in [(HD, 4, 6), (8, 5, 3), (88, 6, 10)]:
        cos, sin = tables(head_dim, th, tw, base_size=None)               # positions 0 .. n-1
        ref_cos, ref_sin = reference_get_2d_rope(head_dim, th, tw, base_size=None)
        check_close(cos, ref_cos, f"cos, base_size=None, head_dim {head_dim}, {th} x {tw}", tol=FP32)
        check_close(sin, ref_sin, f"sin, base_size=None, head_dim {head_dim}, {th} x {tw}", tol=FP32)
    check_raises(ValueError, lambda: ex.get_2d_rope(10, 4, 4),
                 "get_2d_rope(head_dim=10, ...): 10 is not divisible by 4")


def test_scores_depend_only_on_the_offset():
    # RoPE's point, with your three functions: token pairs with the same (row, column) offset get
    # the same score q . k, whatever their absolute positions.
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(HD, generator=g), torch.randn(HD, generator=g)
    cos, sin = tables(HD, 8, 8, base_size=None)

    def score(a, b):
        return (ex.apply_rope(q, cos[a], sin[a]) @ ex.apply_rope(k, cos[b], sin[b])).item()
    same_offset = [score(1 * 8 + 2, 0), score(5 * 8 + 6, 4 * 8 + 4), score(7 * 8 + 7, 6 * 8 + 5)]   # offset (1, 2)
    assert max(same_offset) - min(same_offset) < 1e-4 * max(1.0, abs(same_offset[0])), \
        f"scores at the same offset (1, 2) differ: {same_offset}"
    assert abs(score(1 * 8 + 2, 0) - score(2 * 8 + 1, 0)) > 1e-3, "offsets (1, 2) and (2, 1) should differ"
