"""The package baseline (``statistics.json``, ``constraints.json`` in Model Monitor's schemas).

Read once per run and checked: every feature has a numerical histogram (``distribution.kll
.buckets``) and a constraint; the two files name the same features in the same order.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from monitor.errors import BaselineError
from monitor.sources import read_object

DEFAULT_THRESHOLD = 0.1


@dataclasses.dataclass(frozen=True)
class FeatureBaseline:
    name: str
    inferred_type: str  # "Integral" | "Fractional"
    edges: np.ndarray  # (buckets + 1,) bucket bounds
    counts: np.ndarray  # (buckets,)
    minimum: float
    maximum: float
    completeness: float
    non_negative: bool


@dataclasses.dataclass(frozen=True)
class Baseline:
    features: tuple[FeatureBaseline, ...]
    item_count: int
    comparison_threshold: float
    compare: bool
    datatype_threshold: float
    emit_metrics: bool

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]


def load(statistics_uri: str | Path, constraints_uri: str | Path, s3: Any = None) -> Baseline:
    statistics = _json(str(statistics_uri), s3)
    constraints = _json(str(constraints_uri), s3)
    try:
        constraint_by_name = {c["name"]: c for c in constraints["features"]}
        config = constraints.get("monitoring_config", {})
        distribution = config.get("distribution_constraints", {})
        features = tuple(_feature(f, constraint_by_name) for f in statistics["features"])
        return Baseline(
            features=features,
            item_count=int(statistics["dataset"]["item_count"]),
            comparison_threshold=float(distribution.get("comparison_threshold", DEFAULT_THRESHOLD)),
            compare=distribution.get("perform_comparison", "Enabled") == "Enabled",
            datatype_threshold=float(config.get("datatype_check_threshold", 1.0)),
            emit_metrics=config.get("emit_metrics", "Enabled") == "Enabled",
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BaselineError(
            f"baseline {statistics_uri} / {constraints_uri} is not in Model Monitor's "
            f"schema: {type(exc).__name__}: {exc}"
        ) from exc


def _feature(stats: dict[str, Any], constraints: dict[str, dict[str, Any]]) -> FeatureBaseline:
    name = stats["name"]
    if name not in constraints:
        raise KeyError(f"feature {name!r} has statistics but no constraint")
    numerical = stats["numerical_statistics"]
    buckets = numerical["distribution"]["kll"]["buckets"]
    if not buckets:
        raise ValueError(f"feature {name!r} has an empty histogram")
    edges = np.array([b["lower_bound"] for b in buckets] + [buckets[-1]["upper_bound"]], float)
    constraint = constraints[name]
    return FeatureBaseline(
        name=name,
        inferred_type=stats["inferred_type"],
        edges=edges,
        counts=np.array([b["count"] for b in buckets], dtype=np.float64),
        minimum=float(numerical["min"]),
        maximum=float(numerical["max"]),
        completeness=float(constraint.get("completeness", 1.0)),
        non_negative=bool(constraint.get("num_constraints", {}).get("is_non_negative", False)),
    )


def _json(uri: str, s3: Any) -> dict[str, Any]:
    try:
        data = json.loads(read_object(uri, s3))
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{uri} is not valid JSON: {exc}") from exc
    except Exception as exc:
        raise BaselineError(f"cannot read baseline {uri}: {exc}") from exc
    if not isinstance(data, dict):
        raise BaselineError(f"{uri} must hold a JSON object")
    return data
