"""Grader for exercise 9: python -m pytest exercises/test_ex09_t5_relative_position_bucket.py"""
import math

import torch

from exercises._grading import check_shape, load

ex = load("ex09_t5_relative_position_bucket")
OFFSETS = torch.arange(-400, 401)


def _bucket(rel, *args):
    out = ex.relative_position_bucket(rel, *args)
    check_shape(out, rel.shape, "relative_position_bucket(relative_position)")
    assert out.dtype == torch.long, f"buckets must be integers (torch.long), got {out.dtype}"
    return out


def _python_bucket(rel, bidirectional=True, num_buckets=32, max_distance=128, *, flipped=False, no_cap=False,
                   no_halving=False, exact_before_halving=False, decoder_abs=False, rounded=False):
    """One bucket with Python floats; the keyword arguments give the usual wrong versions."""
    max_exact = num_buckets // 2
    if bidirectional:
        num_buckets = num_buckets if no_halving else num_buckets // 2
        half = num_buckets if (rel < 0 if flipped else rel > 0) else 0
        n = abs(rel)
    else:
        half, n = 0, abs(rel) if decoder_abs else max(-rel, 0)
    if not exact_before_halving:
        max_exact = num_buckets // 2
    if n < max_exact:
        return half + n
    x = math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    large = max_exact + (round(x) if rounded else int(x))
    return half + (large if no_cap else min(large, num_buckets - 1))


MISTAKES = {"The halves are swapped: the upper half of the buckets (16 .. 31) is for j - i > 0, keys after the "
            "query.": {"flipped": True},
            "The log buckets are not capped: offsets beyond max_distance share the last bucket of their half, "
            "num_buckets - 1 (after halving).": {"no_cap": True},
            "Bidirectional: halve num_buckets first (num_buckets //= 2), one half per direction.": {"no_halving": True},
            "max_exact is a quarter of the buckets: compute num_buckets // 2 AFTER halving num_buckets.":
                {"exact_before_halving": True},
            "The decoder (bidirectional=False) sees only j <= i: n = max(-(j - i), 0), not |j - i|.":
                {"decoder_abs": True},
            "The log bucket is rounded: .long() floors it (int(), not round()).": {"rounded": True}}


def _diagnose(got, rel, *args):
    """Name the mistake when `got` (a list of buckets for the offsets `rel`) is a known wrong version."""
    for hint, kw in MISTAKES.items():
        if got == [_python_bucket(r, *args, **kw) for r in rel]:
            raise AssertionError(f"relative_position_bucket{args or ''}: wrong buckets. {hint}")


def test_hand_derived_values():
    rel = torch.tensor([0, -1, -7, 1, 7, -8, 8, -127, 127, -128, 128, -1000, 1000])
    # n = 8: 8 + floor(log(8/8) / log(16) * 8) = 8;  n = 127: 8 + floor(log(15.875) / log(16) * 8) = 15
    expected = [0, 1, 7, 17, 23, 8, 24, 15, 31, 15, 31, 15, 31]
    got = _bucket(rel).tolist()
    if got != expected:
        _diagnose(got, rel.tolist())
    assert got == expected, f"offsets {rel.tolist()}\n  got      {got}\n  expected {expected}"


def test_matrix_shape():
    i, j = torch.arange(5)[:, None], torch.arange(7)[None, :]
    buckets = _bucket(j - i)
    assert buckets[0, 0] == buckets[3, 3] == 0 and buckets[0, 1] == 17 and buckets[1, 0] == 1


def test_log_formula_written_out():
    # An equivalent formulation: for every offset, recompute the bucket with Python floats.
    got = _bucket(OFFSETS, True, 32, 128).tolist()
    for rel, b in zip(OFFSETS.tolist(), got):
        n, half = abs(rel), 16 if rel > 0 else 0
        exact = n if n < 8 else min(15, 8 + int(math.log(n / 8) / math.log(128 / 8) * 8))
        assert b == half + exact, f"offset {rel}: got bucket {b}, expected {half + exact}"


def test_monotone_and_saturating():
    b = _bucket(OFFSETS, True, 32, 128)
    left, right = b[:400].flip(0), b[401:]                         # offsets -1, -2, ... and 1, 2, ...
    assert (left.diff() >= 0).all() and (right.diff() >= 0).all(), "buckets must not decrease with distance"
    assert left.max() == 15 and right.max() == 31 and right.min() == 17


def test_against_reference_other_settings():
    from minidit.text.t5 import relative_position_bucket as reference
    for args in [(True, 32, 128), (False, 32, 128), (True, 32, 20), (True, 16, 64), (False, 8, 16)]:
        got, expected = _bucket(OFFSETS, *args), reference(OFFSETS, *args)
        wrong = (got != expected).nonzero().flatten()
        if len(wrong):
            _diagnose(got.tolist(), OFFSETS.tolist(), *args)
        assert not len(wrong), (f"bidirectional={args[0]}, num_buckets={args[1]}, max_distance={args[2]}: offset "
                                f"{OFFSETS[wrong[0]].item()} gave {got[wrong[0]].item()}, expected {expected[wrong[0]].item()}")
