"""Batch-size buckets for fixed-shape runners (CUDA graphs): which bucket runs which rows.

A captured CUDA graph runs one shape, so a backend keeps one graph per bucket and runs a
request batch in the smallest bucket that holds it, padding the rest of the bucket and
slicing the result (``plan``). A batch above the largest bucket runs as full chunks of the
largest bucket, then the remainder in its own smallest bucket. Invariant relied on by the
padding: the network scores each row independently, so what the padding rows hold (zeros,
or stale rows of an earlier call) never changes a real row's score.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# batch 1 to 65,536 (BATCH_RANGE in optimize.backends); x4 steps keep padding waste below 4x
GPU_BUCKETS = (1, 8, 64, 256, 1_024, 4_096, 16_384, 65_536)


def bucket_for(batch: int, buckets: Sequence[int]) -> int:
    """Smallest bucket >= batch; the largest bucket for anything bigger. ``buckets`` must be
    sorted ascending (the server sorts them once at load: this runs on every request)."""
    i = bisect.bisect_left(buckets, batch)
    return buckets[min(i, len(buckets) - 1)]


class Chunk(NamedTuple):
    start: int  # first row of the request batch in this chunk
    stop: int  # one past its last row
    bucket: int  # the bucket (fixed batch shape) that runs it

    @property
    def rows(self) -> int:
        return self.stop - self.start


def normalize(buckets: Iterable[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated buckets; every one a positive int."""
    out = tuple(sorted(set(buckets)))
    if not out:
        raise ValueError("no buckets given: expected at least one batch size")
    bad = [b for b in out if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    if bad:
        raise ValueError(f"buckets {bad} are not positive integers")
    return out


def plan(batch: int, buckets: tuple[int, ...]) -> list[Chunk]:
    """The chunks that run ``batch`` rows on ``buckets`` (sorted, from :func:`normalize`).

    Every row is in exactly one chunk, chunks are in row order, and each chunk's rows fit its
    bucket. An empty batch needs no chunk.
    """
    if batch < 0:
        raise ValueError(f"batch of {batch} rows; expected >= 0")
    largest = buckets[-1]
    full, rest = divmod(batch, largest)
    chunks = [Chunk(i * largest, (i + 1) * largest, largest) for i in range(full)]
    if rest:
        chunks.append(Chunk(full * largest, batch, bucket_for(rest, buckets)))
    return chunks


def padded_rows(batch: int, buckets: tuple[int, ...]) -> int:
    """Rows computed for ``batch`` (real and padding): the work the plan pays for."""
    return sum(c.bucket for c in plan(batch, buckets))
