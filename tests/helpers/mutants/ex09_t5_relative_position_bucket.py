"""Wrong T5 relative-position buckets (exercise 9)."""
import math

import torch

from helpers.mutants import Mutant


def _bucket(flipped=False, no_cap=False, no_halving=False, exact_before_halving=False, decoder_abs=False,
            rounded=False):
    def relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
        max_exact = num_buckets // 2
        bucket = torch.zeros_like(relative_position)
        if bidirectional:
            if not no_halving:
                num_buckets //= 2
            upper = relative_position < 0 if flipped else relative_position > 0
            bucket = bucket + upper.long() * num_buckets
            n = relative_position.abs()
        else:
            n = relative_position.abs() if decoder_abs else (-relative_position).clamp(min=0)
        if not exact_before_halving:
            max_exact = num_buckets // 2
        x = (torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
             * (num_buckets - max_exact))
        large = max_exact + (x.round() if rounded else x).long()
        if not no_cap:
            large = large.clamp(max=num_buckets - 1)
        return bucket + torch.where(n < max_exact, n, large)
    return relative_position_bucket


MUTANTS = [Mutant(name, {"relative_position_bucket": _bucket(**{kw: True})}, expect) for name, kw, expect in [
    ("halves swapped", "flipped", "the halves are swapped"),
    ("no cap", "no_cap", "the log buckets are not capped"),
    ("num_buckets not halved", "no_halving", "halve num_buckets first"),
    ("max_exact before halving", "exact_before_halving", "after halving num_buckets"),
    ("decoder uses |j - i|", "decoder_abs", "the decoder (bidirectional=false) sees only j <= i"),
    ("log bucket rounded", "rounded", "the log bucket is rounded"),
]]
