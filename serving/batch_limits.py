"""The batcher's largest batch, derived from the backend timings measured at warm-up.

On a GPU a larger batch costs little more than a small one, so the batcher should gather as
many rows as the latency budget allows: the largest timed bucket whose measured p99 fits the
budget (``max_batch_size``). The timings are those of the backend picked for each bucket
(``picked_p99_us``), as ``optimize.selection.select`` returns them. Pure functions: the
caller decides the budget (the share of the request p99 left to scoring).
"""

from __future__ import annotations

from collections.abc import Mapping

Timings = Mapping[str, Mapping[int, Mapping[str, float]]]


def picked_p99_us(selection: Mapping[int, str], timings: Timings) -> dict[int, float]:
    """p99 in microseconds per bucket of the backend picked for that bucket."""
    missing = [(b, name) for b, name in selection.items() if b not in timings.get(name, {})]
    if missing:
        raise ValueError(f"no timing for (bucket, backend) {missing}")
    return {b: float(timings[name][b]["p99_us"]) for b, name in sorted(selection.items())}


def max_batch_size(p99_us_by_bucket: Mapping[int, float], budget_us: float, floor: int = 1) -> int:
    """The largest bucket whose measured p99 is within ``budget_us``; ``floor`` when none is
    (the batcher still has to run single rows, however slow)."""
    if budget_us <= 0:
        raise ValueError(f"p99 budget of {budget_us} us; expected > 0")
    fitting = [b for b, p99 in p99_us_by_bucket.items() if p99 <= budget_us]
    return max([floor, *fitting])


GPU_BACKENDS = ("torch-cuda", "ort-cuda", "ort-tensorrt", "tensorrt")


def batcher_limit(
    selection: Mapping[int, str], timings: Timings, configured: int, budget_us: float
) -> int:
    """The batcher's row limit once backends are picked: ``configured`` on CPU; on a GPU
    (any picked backend is a GPU one) the larger of it and :func:`max_batch_size` over the
    picked backends' timings."""
    if not any(name.startswith(GPU_BACKENDS) for name in selection.values()):
        return configured
    return max(configured, max_batch_size(picked_p99_us(selection, timings), budget_us))
