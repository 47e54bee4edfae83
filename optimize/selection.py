"""Time backends per batch size and pick the fastest per batch-size bucket.

A package is built on one machine and served on another, so the server calls
:func:`select` during warm-up on its own hardware; ``fraud optimize`` calls it too and records
the table in the manifest for information only. A bucket is the smallest timed batch size
that holds a request batch (``optimize.buckets.bucket_for``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from optimize.backend_protocol import Backend

BATCH_SIZES = (1, 8, 64, 512, 4_096)


def time_backend(
    backend: Backend,
    n_features: int,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = 0.3,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Per batch size: p50 and p99 latency in microseconds and rows/s over ``budget_s``."""
    rng = np.random.default_rng(seed)
    out: dict[int, dict[str, float]] = {}
    for batch in batch_sizes:
        x = rng.random((batch, n_features), dtype=np.float32) * 10
        for _ in range(3):  # warm-up: first runs allocate arenas and pick kernels
            backend.predict(x)
        samples: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 10_000):
            start = time.perf_counter_ns()
            backend.predict(x)
            samples.append((time.perf_counter_ns() - start) / 1_000)
        p50, p99 = np.percentile(samples, [50, 99])
        out[batch] = {
            "p50_us": float(p50),
            "p99_us": float(p99),
            "rows_per_s": float(batch / (p50 / 1e6)),
            "runs": len(samples),
        }
    return out


def pick(timings: dict[str, dict[int, dict[str, float]]]) -> dict[int, str]:
    """For each batch size, the backend name with the lowest p50 (ties: the first listed)."""
    sizes = sorted({b for table in timings.values() for b in table})
    return {
        b: min((t[b]["p50_us"], i, name) for i, (name, t) in enumerate(timings.items()) if b in t)[
            2
        ]
        for b in sizes
    }


def select(
    backends: Sequence[Backend],
    n_features: int,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    budget_s: float = 0.3,
    check: Callable[[Backend], None] | None = None,
) -> tuple[dict[int, Backend], dict[str, dict[int, dict[str, float]]], dict[str, str]]:
    """Load, ``check`` (it raises to refuse a backend: ``optimize.reference``) and time each
    backend; return (bucket -> backend, timings, load failures)."""
    loaded: dict[str, Backend] = {}
    failures: dict[str, str] = {}
    for backend in backends:
        try:
            backend.load()
            if check is not None:
                check(backend)
            loaded[backend.name] = backend
        except Exception as exc:  # a runtime that cannot load is reported, never fatal
            failures[backend.name] = f"{type(exc).__name__}: {exc}"
    if not loaded:
        raise RuntimeError(f"no backend could be loaded: {failures}")
    timings = {
        name: time_backend(b, n_features, _sizes_for(b, batch_sizes), budget_s)
        for name, b in loaded.items()
    }
    return {b: loaded[name] for b, name in pick(timings).items()}, timings, failures


def _sizes_for(backend: Backend, batch_sizes: Sequence[int]) -> list[int]:
    """The sizes worth timing: a row-at-a-time backend declares ``max_batch``."""
    limit = getattr(backend, "max_batch", None)
    return [b for b in batch_sizes if limit is None or b <= limit]
