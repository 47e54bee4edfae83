"""Window statistics and constraint checks against the baseline (Model Monitor's schemas).

Distribution drift (``baseline_drift_check``): the L-infinity distance between the
baseline's CDF and the window's empirical CDF, both taken at the baseline's bucket bounds
(values below the lowest bound and above the highest count as distance), compared with the
constraints' ``comparison_threshold``.

When is a window big enough? With no drift, the empirical CDF of n values stays within eps
of the true one except with probability 2 exp(-2 n eps^2) (Dvoretzky-Kiefer-Wolfowitz;
it holds for discrete features too). Splitting a window's false-alarm budget ``alpha``
over its features, a feature is compared only when n >= ln(2 F / alpha) / (2 t^2) with t
the threshold: 320 values for t = 0.1, 15 features, alpha 0.05. Below that the check reports
"insufficient data", never drift.

Calendar features are constant within an hour (``is_night``) or a day (``is_weekend``), so
a window shorter than their cycle (24 h, 168 h) differs from a week-long baseline by
construction; those features are compared only in windows covering a whole cycle.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from monitor.baseline import Baseline, FeatureBaseline
from monitor.records import Window

CYCLE_HOURS = {"is_night": 24, "is_weekend": 7 * 24}


@dataclasses.dataclass(frozen=True)
class DriftResult:
    distance: dict[str, float]  # features compared
    skipped: dict[str, str]  # features not compared, with the reason


def min_records(threshold: float, alpha: float, n_features: int) -> int:
    """Smallest window in which a drift check's false-alarm chance is below alpha/F."""
    return math.ceil(math.log(2 * max(n_features, 1) / alpha) / (2 * threshold**2))


def cdf_distance(feature: FeatureBaseline, values: np.ndarray) -> float:
    """L-inf distance between the baseline's and ``values``' CDFs at the baseline's bounds."""
    total = feature.counts.sum()
    if total <= 0 or len(values) == 0:
        return math.nan
    baseline_cdf = np.concatenate([[0.0], np.cumsum(feature.counts) / total])
    ordered = np.sort(values)
    # the baseline's buckets are half-open [lo, hi) but for the last, closed one (numpy's
    # histogram): its CDF at a bound counts values strictly below, at the top bound all
    window_cdf = np.searchsorted(ordered, feature.edges, side="left") / len(ordered)
    window_cdf[-1] = np.searchsorted(ordered, feature.edges[-1], side="right") / len(ordered)
    return float(np.max(np.abs(window_cdf - baseline_cdf)))


def drift(baseline: Baseline, x: np.ndarray, window_hours: float, alpha: float) -> DriftResult:
    """Per-feature CDF distance where the window is big and long enough to mean something."""
    needed = min_records(baseline.comparison_threshold, alpha, len(baseline.features))
    distance: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for j, feature in enumerate(baseline.features):
        values = x[:, j][np.isfinite(x[:, j])]
        cycle = CYCLE_HOURS.get(feature.name)
        if cycle is not None and window_hours < cycle:
            skipped[feature.name] = (
                f"calendar feature: needs a window of {cycle} h, this one is {window_hours:g} h"
            )
        elif len(values) < needed:
            skipped[feature.name] = (
                f"insufficient data: {len(values)} values, {needed} needed for threshold "
                f"{baseline.comparison_threshold:g} at alpha {alpha:g}"
            )
        else:
            distance[feature.name] = cdf_distance(feature, values)
    return DriftResult(distance, skipped)


def statistics(baseline: Baseline, window: Window, x: np.ndarray) -> dict[str, Any]:
    """The window's ``statistics.json``: the baseline's schema, histograms on its bounds."""
    features = []
    for j, feature in enumerate(baseline.features):
        column = x[:, j]
        present = column[np.isfinite(column)]
        n = len(present)
        numerical: dict[str, Any] = {
            "common": {"num_present": int(n), "num_missing": int(len(column) - n)},
            "mean": float(present.mean()) if n else 0.0,
            "sum": float(present.sum()),
            "std_dev": float(present.std()) if n else 0.0,
            "min": float(present.min()) if n else 0.0,
            "max": float(present.max()) if n else 0.0,
            "distribution": {"kll": {"buckets": _buckets(feature, present)}},
        }
        features.append(
            {
                "name": feature.name,
                "inferred_type": _inferred_type(present, int(window.wrong_type[j])),
                "numerical_statistics": numerical,
            }
        )
    return {"version": 0.0, "dataset": {"item_count": int(len(x))}, "features": features}


def violations(
    baseline: Baseline, window: Window, x: np.ndarray, result: DriftResult
) -> list[dict[str, str]]:
    """Model Monitor's violations: column count, type, completeness, sign and drift."""
    out: list[dict[str, str]] = []
    n_features = len(baseline.features)
    if window.short_rows:
        out.append(
            _violation(
                "",
                "missing_column_check",
                f"{window.short_rows} rows had fewer than the baseline's {n_features} columns",
            )
        )
    if window.long_rows:
        out.append(
            _violation(
                "",
                "extra_column_check",
                f"{window.long_rows} rows had more than the baseline's {n_features} columns",
            )
        )
    for j, feature in enumerate(baseline.features):
        out.extend(_feature_violations(baseline, feature, window, x[:, j], j))
        distance = result.distance.get(feature.name)
        if distance is not None and baseline.compare and distance > baseline.comparison_threshold:
            out.append(
                _violation(
                    feature.name,
                    "baseline_drift_check",
                    f"Baseline drift distance: {distance:.4f} exceeds threshold: "
                    f"{baseline.comparison_threshold:g} (L-inf distance of the CDFs on the "
                    f"baseline's bucket bounds, {int(np.isfinite(x[:, j]).sum())} values)",
                )
            )
    return out


def _feature_violations(
    baseline: Baseline, feature: FeatureBaseline, window: Window, column: np.ndarray, j: int
) -> list[dict[str, str]]:
    out = []
    if window.absent[j]:
        out.append(
            _violation(
                feature.name,
                "missing_column_check",
                f"absent from {int(window.absent[j])} rows of named features",
            )
        )
    present = column[np.isfinite(column)]
    wrong = int(window.wrong_type[j])
    mismatched = wrong
    if feature.inferred_type == "Integral":
        mismatched += int(np.count_nonzero(np.mod(present, 1)))
    typed = len(present) + wrong
    if typed and (typed - mismatched) / typed < baseline.datatype_threshold:
        out.append(
            _violation(
                feature.name,
                "data_type_check",
                f"{mismatched} of {typed} values are not {feature.inferred_type} "
                f"({wrong} not numbers); baseline type {feature.inferred_type}, "
                f"datatype_check_threshold {baseline.datatype_threshold:g}",
            )
        )
    if len(column):
        completeness = 1.0 - (len(column) - len(present) - wrong) / len(column)
        if completeness < feature.completeness:
            out.append(
                _violation(
                    feature.name,
                    "completeness_check",
                    f"completeness {completeness:.4f} is below the baseline's "
                    f"{feature.completeness:.4f}",
                )
            )
    negative = int(np.count_nonzero(present < 0))
    if feature.non_negative and negative:
        out.append(
            _violation(
                feature.name,
                "range_check",
                f"{negative} negative values; the baseline constraint is_non_negative is true",
            )
        )
    return out


def _violation(name: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": name, "constraint_check_type": check, "description": description}


def _buckets(feature: FeatureBaseline, present: np.ndarray) -> list[dict[str, float]]:
    """The window's histogram on the baseline's buckets, in Model Monitor's fixed layout of
    10: values below or above the baseline's range widen the first or last bucket."""
    edges = feature.edges.copy()
    if len(present):
        edges[0], edges[-1] = min(edges[0], present.min()), max(edges[-1], present.max())
    # np.histogram counts the top bound into the last bucket, as the baseline's histogram did
    counts, _ = np.histogram(present, bins=edges)
    return [
        {"lower_bound": float(lo), "upper_bound": float(hi), "count": float(c)}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


def _inferred_type(present: np.ndarray, wrong_type: int) -> str:
    if wrong_type > len(present):
        return "String"
    if len(present) == 0:
        return "Unknown"
    return "Integral" if not np.any(np.mod(present, 1)) else "Fractional"
