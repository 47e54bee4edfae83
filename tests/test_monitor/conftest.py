"""Monitor fixtures: a baseline from synthetic features, capture written by the server's own
writer (serving.capture.DataCapture) in both request forms, and the Processing tree."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from core.feature_names import FEATURE_NAMES
from optimize import monitor_baseline
from serving.capture import DataCapture
from serving.identifiers import IdentifierHasher

T0 = dt.datetime(2024, 5, 1, 13, 0, tzinfo=dt.UTC)
ENDPOINT, VARIANT = "fraud-ep", "AllTraffic"


def synthetic_features(n: int, rng: np.random.Generator, amount_scale: float = 1.0) -> np.ndarray:
    """(n, 15) rows shaped like the model's features (amounts, flags, counts, risks)."""
    amount = np.round(rng.gamma(2.0, 30.0, n) * amount_scale, 2)
    weekend = (rng.random(n) < 2 / 7).astype(float)
    night = (rng.random(n) < 0.15).astype(float)
    cols = [amount, weekend, night]
    for days in (1, 7, 30):
        count = rng.poisson(2.0 * days, n).astype(float) + 1
        cols += [count, np.round(rng.normal(50, 10, n).clip(1), 2)]
    for days in (1, 7, 30):
        count = rng.poisson(3.0 * days, n).astype(float)
        risk = np.where(count > 0, rng.binomial(count.astype(int), 0.01) / np.maximum(count, 1), 0)
        cols += [count, risk]
    return np.column_stack(cols)


def write_baseline(directory: Path, x: np.ndarray) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stats, constraints = directory / "statistics.json", directory / "constraints.json"
    stats.write_text(json.dumps(monitor_baseline.statistics(x, FEATURE_NAMES)))
    constraints.write_text(json.dumps(monitor_baseline.constraints(x, FEATURE_NAMES)))
    return stats, constraints


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package directory with baseline/ and a manifest holding validation figures."""
    root = tmp_path_factory.mktemp("package")
    write_baseline(root / "baseline", synthetic_features(20_000, np.random.default_rng(0)))
    validation = {"auc_roc": 0.89, "average_precision": 0.70, "card_precision_at_100": 0.30}
    (root / "manifest.json").write_text(json.dumps({"metrics": {"validation": validation}}))
    return root


class Clock:
    def __init__(self, times: Sequence[dt.datetime]) -> None:
        self._times: Iterator[dt.datetime] = iter(times)

    def __call__(self) -> dt.datetime:
        return next(self._times)


def decision(score: float) -> str:
    return "decline" if score >= 0.9 else "review" if score >= 0.5 else "approve"


def write_capture(
    root: Path,
    x: np.ndarray,
    times: Sequence[dt.datetime],
    form: str = "json",
    scores: np.ndarray | None = None,
    ids: Sequence[str] | None = None,
) -> None:
    """One invocation per row, as the server captures it. ``form``: ``json`` (instances),
    ``csv``, or ``transaction`` (raw transaction in, computed features in the output)."""
    scores = np.full(len(x), 0.01) if scores is None else scores
    capture = DataCapture(root, ENDPOINT, VARIANT, 100.0, IdentifierHasher((), b""), Clock(times))
    for i, row in enumerate(x.tolist()):
        tx_id = ids[i] if ids is not None else f"tx-{i}"
        prediction: dict[str, object] = {
            "score": float(scores[i]),
            "decision": decision(float(scores[i])),
        }
        if form == "transaction":
            request = json.dumps(
                {
                    "transaction_id": tx_id,
                    "customer": "c1",
                    "terminal": "t1",
                    "amount": row[0],
                    "time": "2024-05-01T13:00:00Z",
                }
            )
            prediction |= {
                "transaction_id": tx_id,
                "features": dict(zip(FEATURE_NAMES, row, strict=True)),
            }
            body, kind = request.encode(), "application/json"
        elif form == "csv":
            body, kind = (",".join(repr(v) for v in row) + "\n").encode(), "text/csv"
        else:
            body, kind = json.dumps({"instances": [row]}).encode(), "application/json"
        response = json.dumps(
            {"predictions": [prediction], "model_version": "m1", "thresholds_version": "t1"}
        ).encode()
        capture.submit(body, kind, response, "application/json", ids[i] if ids else None)
    capture.close()


def hourly_times(start: dt.datetime, n: int, hours: float = 1.0) -> list[dt.datetime]:
    """n times spread evenly over ``hours`` from ``start``."""
    step = dt.timedelta(hours=hours) / n
    return [start + i * step for i in range(n)]


def monitor_env(package: Path, capture: Path, out: Path, **extra: str) -> dict[str, str]:
    env = {
        "dataset_format": '{"sagemakerCaptureJson": {"captureIndexNames": '
        '["endpointInput", "endpointOutput"]}}',
        "dataset_source": str(capture),
        "start_time": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": (T0 + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "output_path": str(out),
        "baseline_statistics": str(package / "baseline" / "statistics.json"),
        "baseline_constraints": str(package / "baseline" / "constraints.json"),
        "sagemaker_endpoint_name": ENDPOINT,
    }
    return env | extra
