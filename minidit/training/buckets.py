"""Aspect-ratio bucketing: every batch holds images of one bucket's size, sharded over processes.

Papers: PixArt-α (arXiv:2310.00426) §2.4 multi-aspect training; PixArt-Σ (arXiv:2403.04692). Official
tables: PixArt-alpha/PixArt-sigma `diffusion/data/datasets/utils.py` (reproduced in `pipelines/resolution.py`).

PixArt-α/Σ train "multi-scale" (the `-MS` checkpoints): each image is resized and centre-cropped to the
bucket whose height/width ratio is nearest its own (`pipelines/resolution.py`: the official tables
`ASPECT_RATIO_256/512/1024/2048`, one table scaled), and a batch is drawn from one bucket, so its
latents stack into one tensor. How many buckets? The tables have 40 entries per side (ratios 0.25 to
4.0; the `_TEST` tables and diffusers' bins 33) — not the "8 buckets" of the comparison article; a
data set usually fills only some of them (`BucketBatchSampler.summary`).

One optimizer step consumes one *global batch* of G = batch_size x grad_accum x world_size images of
one bucket. An epoch: each bucket's images shuffled (seed, epoch), cut into global batches (a bucket's
last incomplete one is dropped: every process must see the same shapes; `summary` counts them), the
batches shuffled. Rank r's micro-batch m of a step is the slice at position (m x world_size + r) x
batch_size of the global batch: the ranks' slices are disjoint and together the whole batch, and the
same global batch is what one process with batch_size x world_size sees (that is the distributed
test). Positions also key the per-sample draws (`objectives.sample_generator`).
"""
from __future__ import annotations

import torch

from minidit.errors import InputError
from minidit.pipelines.resolution import aspect_ratio_table, classify_height_width_bin


def assign_buckets(sizes, side: int) -> list[tuple[int, int]]:
    """The (height, width) bucket of PixArt's training table at `side` (256/512/1024/2048) nearest each
    image's (height, width) ratio (the pipelines' rule, `classify_height_width_bin`)."""
    table = aspect_ratio_table(side)
    return [classify_height_width_bin(int(h), int(w), table) for h, w in sizes]


class BucketBatchSampler:
    """Batches of item indices, each from one bucket; this rank's share of each optimizer step.

    buckets: one hashable bucket per item (e.g. its (height, width)); iterate `steps(epoch)`, or use it
    as a DataLoader `batch_sampler` (`set_epoch`, like DistributedSampler)."""

    def __init__(self, buckets, batch_size: int, *, grad_accum: int = 1, world_size: int = 1, rank: int = 0,
                 seed: int = 0):
        for name, v in (("batch_size", batch_size), ("grad_accum", grad_accum), ("world_size", world_size)):
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if not 0 <= rank < world_size:
            raise InputError(f"rank {rank} is not in [0, {world_size})")
        self.buckets = list(buckets)
        self.batch_size, self.grad_accum, self.world_size, self.rank = batch_size, grad_accum, world_size, rank
        self.seed, self.epoch = seed, 0
        self.global_batch = batch_size * grad_accum * world_size
        self.by_bucket: dict = {}
        for i, b in enumerate(self.buckets):
            self.by_bucket.setdefault(b, []).append(i)
        if self.steps_per_epoch() == 0:
            raise InputError(f"no bucket holds a global batch of {self.global_batch} images (batch_size x grad_accum "
                             f"x processes); the largest holds {max(map(len, self.by_bucket.values()), default=0)}: "
                             "use a smaller batch or more images")

    def steps_per_epoch(self) -> int:
        return sum(len(ix) // self.global_batch for ix in self.by_bucket.values())

    def summary(self) -> dict:
        """bucket -> (images, used per epoch, dropped per epoch)."""
        G = self.global_batch
        return {b: (len(ix), len(ix) // G * G, len(ix) % G) for b, ix in sorted(self.by_bucket.items())}

    def global_batches(self, epoch: int) -> list[tuple]:
        """[(bucket, [item indices] of length G)] for one epoch, in training order (a function of seed, epoch)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        batches = []
        for b in sorted(self.by_bucket):
            ix = self.by_bucket[b]
            order = [ix[j] for j in torch.randperm(len(ix), generator=g).tolist()]
            G = self.global_batch
            batches += [(b, order[k:k + G]) for k in range(0, len(order) - G + 1, G)]
        return [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]

    def step(self, step: int) -> tuple:
        """(bucket, [(positions, item indices)] x grad_accum) of this rank for optimizer step `step` (0-based,
        counted over epochs): epoch = step // steps_per_epoch."""
        epoch, k = divmod(step, self.steps_per_epoch())
        if getattr(self, "_cached", (None,))[0] != epoch:
            self._cached = (epoch, self.global_batches(epoch))
        bucket, items = self._cached[1][k]
        micro = []
        for m in range(self.grad_accum):
            start = (m * self.world_size + self.rank) * self.batch_size
            positions = list(range(start, start + self.batch_size))
            micro.append((positions, [items[p] for p in positions]))
        return bucket, micro

    # DataLoader batch_sampler interface: this rank's micro-batches of one epoch
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch() * self.grad_accum

    def __iter__(self):
        n = self.steps_per_epoch()
        for k in range(n):
            for _, items in self.step(self.epoch * n + k)[1]:
                yield items
