"""Bucket plans: every row in exactly one chunk, each chunk in the smallest bucket that fits."""

from __future__ import annotations

import pytest

from optimize.buckets import GPU_BUCKETS, Chunk, normalize, padded_rows, plan

BUCKETS = (1, 8, 64)


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (0, []),
        (1, [Chunk(0, 1, 1)]),
        (2, [Chunk(0, 2, 8)]),
        (8, [Chunk(0, 8, 8)]),
        (9, [Chunk(0, 9, 64)]),
        (64, [Chunk(0, 64, 64)]),
        (65, [Chunk(0, 64, 64), Chunk(64, 65, 1)]),
        (130, [Chunk(0, 64, 64), Chunk(64, 128, 64), Chunk(128, 130, 8)]),
    ],
)
def test_plan_pads_to_the_smallest_bucket_and_chunks_above_the_largest(
    batch: int, expected: list[Chunk]
) -> None:
    assert plan(batch, BUCKETS) == expected


@pytest.mark.parametrize("batch", [1, 3, 1_000, 65_536, 65_537, 200_003])
def test_plan_covers_every_row_once_in_order(batch: int) -> None:
    chunks = plan(batch, GPU_BUCKETS)
    assert chunks[0].start == 0 and chunks[-1].stop == batch
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(0 < c.rows <= c.bucket for c in chunks)
    assert sum(c.rows for c in chunks) == batch


def test_padding_waste_is_below_the_bucket_step() -> None:
    # x8 steps between 1, 8, 64: at most 8x the rows, and exact at a bucket size
    assert padded_rows(9, BUCKETS) == 64
    assert padded_rows(64, BUCKETS) == 64
    assert all(padded_rows(b, GPU_BUCKETS) < 8 * b for b in range(1, 5_000))


def test_normalize_sorts_and_deduplicates() -> None:
    assert normalize([64, 1, 8, 8]) == (1, 8, 64)


@pytest.mark.parametrize("bad", [[], [0, 8], [-1], [2.5], [True]])
def test_normalize_rejects_non_positive_or_non_integer_buckets(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="bucket"):
        normalize(bad)  # type: ignore[arg-type]


def test_plan_rejects_a_negative_batch() -> None:
    with pytest.raises(ValueError, match="-1 rows"):
        plan(-1, BUCKETS)
