"""Model quality once labels arrive, and the per-hour decision rates and score distribution.

Labels (CSV or Parquet) hold ``label`` (0/1), a key (``transaction_id``, or ``inference_id``
for the feature-vector form) and optionally ``card`` (the customer token) for card
precision@100. Captured predictions are joined with them by key. A day is scored only when
it ended at least ``label_delay_days`` before the window's end: younger days' frauds are
not all reported yet, and scoring them would read as a drop in quality that is only
missing labels. Per day: AUC-ROC, average precision and card precision@100, compared with
the package's own validation figures; a day below them by more than the margin is a
violation in Model Monitor's model-quality form (``LessThanThreshold``).

The decline and review rates and the score distribution move before labels arrive: they
are reported per hour of inference time.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from model.metrics import card_precision_at_k
from monitor.errors import SourceError
from monitor.records import Window
from monitor.sources import read_object

METRICS = ("auc_roc", "average_precision", "card_precision_at_100")
SCORE_QUANTILES = (0.5, 0.9, 0.99)
SCORE_BINS = np.linspace(0.0, 1.0, 11)


def hourly(window: Window) -> dict[str, dict[str, Any]]:
    """Per hour (``yyyy-mm-ddThh``): rows, decline/review rates among the rows whose
    decision was captured (a CSV response or an input-only capture has none), scores."""
    hours, scores, decisions = window.hours, window.scores, window.decisions
    out: dict[str, dict[str, Any]] = {}
    for hour in sorted(set(hours.tolist())):
        rows = hours == hour
        s = scores[rows][np.isfinite(scores[rows])]
        d = decisions[rows]
        d = d[d != ""]
        entry: dict[str, Any] = {"rows": int(rows.sum()), "decided": len(d)}
        if len(d):
            entry["decline_rate"] = float(np.mean(d == "decline"))
            entry["review_rate"] = float(np.mean(d == "review"))
        if len(s):
            entry["score_mean"] = float(s.mean())
            for q in SCORE_QUANTILES:
                entry[f"score_p{round(q * 100)}"] = float(np.quantile(s, q))
            entry["score_histogram"] = np.histogram(s, bins=SCORE_BINS)[0].tolist()
        out[hour] = entry
    return out


def read_labels(uri: str, s3: Any = None) -> pd.DataFrame:
    """Labels with a ``key`` column (transaction_id or inference_id), ``label``, ``card``?"""
    data = read_object(uri, s3)
    try:
        frame = (
            pd.read_parquet(io.BytesIO(data))
            if uri.endswith(".parquet")
            else pd.read_csv(io.BytesIO(data), dtype={"transaction_id": str, "inference_id": str})
        )
    except Exception as exc:  # pandas/pyarrow parse errors: one boundary
        raise SourceError(f"labels {uri} cannot be read: {exc}") from exc
    key = next((k for k in ("transaction_id", "inference_id") if k in frame), None)
    if key is None or "label" not in frame:
        raise SourceError(
            f"labels {uri} need columns label and transaction_id (or inference_id); "
            f"got {sorted(frame.columns)}"
        )
    out = pd.DataFrame({"key": frame[key].astype(str), "label": frame["label"].astype(int)})
    if "card" in frame:
        out["card"] = frame["card"].astype(str)
    return out.drop_duplicates("key", keep="last")


def daily(
    window: Window, labels: pd.DataFrame, end_time: dt.datetime, label_delay_days: int
) -> dict[str, dict[str, float]]:
    """Per labelled day (``yyyy-mm-dd``): joined rows, frauds and the quality metrics."""
    captured = pd.DataFrame(
        {"key": window.keys, "day": window.hours.astype("U10"), "score": window.scores}
    )
    joined = captured.merge(labels, on="key", how="inner")
    joined = joined[np.isfinite(joined["score"])]
    last_day = (end_time - dt.timedelta(days=label_delay_days)).date()
    out: dict[str, dict[str, float]] = {}
    for day, rows in joined.groupby("day", sort=True):
        if dt.date.fromisoformat(str(day)) >= last_day:
            continue  # labels still arriving
        out[str(day)] = _metrics(rows)
    return out


def _metrics(rows: pd.DataFrame) -> dict[str, float]:
    y = rows["label"].to_numpy()
    s = rows["score"].to_numpy()
    entry: dict[str, float] = {"labelled": float(len(rows)), "frauds": float(y.sum())}
    if 0 < y.sum() < len(y):
        entry["auc_roc"] = float(roc_auc_score(y, s))
        entry["average_precision"] = float(average_precision_score(y, s))
    if "card" in rows and y.sum() > 0:
        cards = pd.factorize(rows["card"])[0]
        entry["card_precision_at_100"] = card_precision_at_k(
            np.zeros(len(rows), np.int64), cards, y, s, k=100
        )
    return entry


def validation_figures(manifest: str | None, s3: Any = None) -> dict[str, float]:
    """The package's validation metrics (``manifest.json`` metrics.validation)."""
    if manifest is None:
        return {}
    try:
        figures = json.loads(read_object(manifest, s3))["metrics"]["validation"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SourceError(f"validation metrics cannot be read from {manifest}: {exc}") from exc
    return {m: float(figures[m]) for m in METRICS if m in figures}


def violations(
    days: dict[str, dict[str, float]], validation: dict[str, float], margin: float
) -> list[dict[str, str]]:
    out = []
    for day, metrics in days.items():
        for name, reference in validation.items():
            value = metrics.get(name)
            if value is not None and value < reference - margin:
                out.append(
                    {
                        "metric_name": name,
                        "constraint_check_type": "LessThanThreshold",
                        "description": (
                            f"Metric {name} with {value:.4f} on {day} was LessThanThreshold "
                            f"{reference - margin:.4f} (validation {reference:.4f} - margin "
                            f"{margin:g})"
                        ),
                    }
                )
    return out
