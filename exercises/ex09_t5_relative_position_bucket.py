"""Exercise 9 — T5's relative position buckets (chapter 05_text_encoders).

T5 has no position embedding. Each attention head instead adds a learned scalar b[bucket(j - i)]
to the score of query i and key j. Nearby offsets get a bucket each; far ones share buckets
whose width grows logarithmically. Write the bucket function, then check yourself:

    python -m pytest exercises/test_ex09_t5_relative_position_bucket.py
"""
import math

import torch

# The minidit function this stub re-implements (used by CI to check the grader itself).
REFERENCE = {"relative_position_bucket": "minidit.text.t5:relative_position_bucket"}


def relative_position_bucket(relative_position, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128):
    """Map a key-minus-query offset j - i to one of `num_buckets` buckets (T5 paper §2.1).

    Bidirectional (the encoder): half the buckets for j > i, half for j <= i. Within each half,
    offsets 0 .. max_exact-1 (max_exact = a quarter of the buckets) get one bucket each; larger
    offsets share buckets whose width grows logarithmically up to `max_distance`, and everything
    farther lands in the last bucket. With 32 buckets: 8 exact offsets, then 8 log-spaced ones.
    """
    # ┌────────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: relative_position (j - i) is a LongTensor of any shape; return a LongTensor of       │
    # │ that shape.                                                                                │
    # │   1. bidirectional (the encoder): halve num_buckets; the offsets j - i > 0 use the         │
    # │      upper half (bucket numbers offset by the new num_buckets), j - i <= 0 the lower       │
    # │      half; n = |j - i|.  Otherwise (a decoder): no offset, and n = max(-(j - i), 0).       │
    # │   2. max_exact = num_buckets // 2: an offset n < max_exact keeps the bucket n.             │
    # │   3. a larger n gets one of the log-spaced buckets max_exact .. num_buckets - 1: the       │
    # │      chapter's formula (written there for max_exact = 8, max_distance = 128), floored,     │
    # │      and capped at num_buckets - 1. Compute the log ratio in float32, in T5's order        │
    # │      (log(n / max_exact) / log(max_distance / max_exact), times the number of log          │
    # │      buckets, then floor): the grader compares the buckets exactly.                        │
    # │   4. the result: the half's offset + the bucket from 2 or 3                                │
    # │ With the defaults: 0 -> 0, -7 -> 7, 1 -> 17, -8 -> 8, 127 -> 31, -1000 -> 15.              │
    # │ Read first: chapters/05_text_encoders.ipynb, section                                       │
    # │   - Where is position? T5's relative position buckets                                      │
    # │ Stuck after a real try? HINT 2 at the end of this file walks you through it.               │
    # └────────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("relative_position_bucket")
    # *****END OF YOUR CODE*****


# ============================================================================================
# HINT 2 (the walkthrough; read it only if you are stuck after trying with the box above)
# ============================================================================================
# relative_position_bucket
# ------------------------
#     bucket = torch.zeros_like(relative_position)
#     if bidirectional:
#         num_buckets //= 2
#         bucket = bucket + (relative_position > 0).long() * num_buckets
#         n = relative_position.abs()
#     else:
#         n = (-relative_position).clamp(min=0)
#     max_exact = num_buckets // 2
#     log_ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
#     large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
#     large = large.clamp(max=num_buckets - 1)
#     return bucket + torch.where(n < max_exact, n, large)
# Why:
# * an encoder token attends both ways, so "3 to the left" and "3 to the right" must be told apart: the
#   sign picks a half of the buckets and only |j - i| matters inside it. A decoder only sees j <= i, so
#   the positive offsets (which the causal mask hides anyway) all go to bucket 0.
# * small offsets are where word order matters most, so each gets its own bucket. Beyond max_exact the
#   bucket grows with log(n): offsets max_exact .. max_distance are spread over the remaining
#   num_buckets - max_exact buckets, each bucket a constant factor wider than the previous one.
# * torch.where computes BOTH branches for every element, so the log must be defined for n = 0 too:
#   clamp(min=1) avoids log(0) = -inf (those n take the exact branch anyway).
# * .long() truncates towards zero, which is floor here (the values are >= 0 where they are used);
#   everything at or beyond max_distance is capped into the last bucket.
