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
    # ┌──────────────────────────────────────────────────────────────────────────────────────────┐
    # │ TODO: relative_position is a LongTensor of any shape; return a LongTensor of that shape. │
    # │   1. bidirectional: num_buckets //= 2; bucket = num_buckets where j - i > 0, else 0;     │
    # │      n = |j - i|.  Otherwise (a decoder): bucket = 0 and n = max(-(j - i), 0).           │
    # │   2. max_exact = num_buckets // 2: an offset n < max_exact keeps bucket n.               │
    # │   3. larger n: max_exact + floor(log(n / max_exact) / log(max_distance / max_exact)      │
    # │                                  * (num_buckets - max_exact)),                           │
    # │      capped at num_buckets - 1. Compute the log in float32, in this order, then .long()  │
    # │      floors. Use n.clamp(min=1) inside the log to avoid log(0) (those n take step 2).    │
    # │   4. return bucket + torch.where(n < max_exact, n, log_bucket)                           │
    # │ With the defaults: 0 -> 0, -7 -> 7, 1 -> 17, -8 -> 8, 127 -> 31, -1000 -> 15.            │
    # └──────────────────────────────────────────────────────────────────────────────────────────┘
    # *****START OF YOUR CODE*****
    raise NotImplementedError("relative_position_bucket")
    # *****END OF YOUR CODE*****
