"""Reference scores stored in the package, and the load-time check that holds backends to them.

At build, ``write`` stores ``reference/rows.npy`` (real validation rows and rows drawn inside
the manifest's feature ranges, counts whole) and ``reference/scores.npy``: the package's
scores for those rows at its declared precision (PyTorch fp32 for an fp32 package). At load,
``check`` scores the rows with a backend alone, and in full batches of every bucket size, and
refuses the backend if any score is further than the tolerance from the reference. The server
therefore needs neither PyTorch nor the build tools to prove what it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimize.backend_protocol import Backend
from optimize.errors import PackageError

ROWS, SCORES = "reference/rows.npy", "reference/scores.npy"
SINGLE_ROWS = 64  # rows each small batch size covers (size 1: 64 lone requests)


def plausible_rows(features: Sequence[dict[str, Any]], n: int, seed: int = 0) -> np.ndarray:
    """(n, n_features) float32 drawn uniformly inside each feature's training range; features
    whose range holds whole numbers only (counts, flags) get whole numbers."""
    rng = np.random.default_rng(seed)
    cols = []
    for f in features:
        lo, hi = float(f["min"]), float(f["max"])
        col = rng.uniform(lo, hi, size=n)
        if _whole(f):
            col = np.round(col)
        cols.append(col)
    return np.stack(cols, axis=1).astype(np.float32)


def _whole(feature: dict[str, Any]) -> bool:
    """Flags and counts (``is_*``, ``*_count_*``) hold whole numbers only."""
    name = str(feature["name"])
    return name.startswith("is_") or "_count_" in name


def write(pkg: Path, rows: np.ndarray, scores: np.ndarray) -> None:
    (pkg / "reference").mkdir(exist_ok=True)
    np.save(pkg / ROWS, np.ascontiguousarray(rows, dtype=np.float32), allow_pickle=False)
    np.save(pkg / SCORES, np.ascontiguousarray(scores, dtype=np.float32), allow_pickle=False)


def load(pkg: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = np.load(pkg / ROWS, allow_pickle=False)
    scores = np.load(pkg / SCORES, allow_pickle=False)
    if rows.ndim != 2 or scores.shape != (len(rows),):
        raise PackageError(f"{ROWS} {rows.shape} and {SCORES} {scores.shape} do not match")
    return rows, scores


def max_diff(
    backend: Backend, rows: np.ndarray, reference: np.ndarray, batch_sizes: Sequence[int]
) -> float:
    """Largest |score - reference| over: every row in one batch of the whole set, and for each
    size in ``batch_sizes``, full batches of that size covering at least ``SINGLE_ROWS`` rows
    (rows repeated to fill a batch larger than the set). Sizes above the backend's
    ``max_batch`` (a row-at-a-time kernel) are skipped: selection never gives it those."""
    limit = getattr(backend, "max_batch", None)
    worst = 0.0
    plans = [np.arange(len(rows))]
    for size in batch_sizes:
        if limit is not None and size > limit:
            continue
        idx = np.resize(np.arange(len(rows)), max(size, SINGLE_ROWS))  # repeats to fill
        plans += [idx[i : i + size] for i in range(0, len(idx) - size + 1, size)]
    for part in plans:
        got = backend.predict(np.ascontiguousarray(rows[part]))
        if not np.isfinite(got).all():
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got - reference[part]))))
    return worst


def check(
    backend: Backend,
    rows: np.ndarray,
    reference: np.ndarray,
    batch_sizes: Sequence[int],
    tolerance: float,
) -> None:
    """Raise PackageError naming the backend when it strays from the reference scores."""
    worst = max_diff(backend, rows, reference, batch_sizes)
    if not worst <= tolerance:
        raise PackageError(
            f"{backend.name} scores differ from the package reference by {worst:.3g} "
            f"(limit {tolerance:g}) in batches of {list(batch_sizes)}"
        )


def checker(
    pkg: Path, batch_sizes: Sequence[int], tolerance: float | None = None
) -> Callable[[Backend], None]:
    """``check`` bound to a package's reference rows and scores, for ``selection.select``;
    the tolerance defaults to the package's ``score_tolerance``."""
    import json

    rows, scores = load(pkg)
    if tolerance is None:
        manifest = json.loads((pkg / "manifest.json").read_text())
        tolerance = float(manifest["score_tolerance"])
    limit = tolerance
    return lambda backend: check(backend, rows, scores, batch_sizes, limit)
