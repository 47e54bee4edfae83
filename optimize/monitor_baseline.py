"""Baseline statistics of the training features in SageMaker Model Monitor's format.

``statistics.json``: item count and, per feature, inferred type, presence counts, mean,
sum, std, min, max and a histogram (Model Monitor's KLL bucket layout). ``constraints.json``:
per feature type, completeness and non-negativity; the monitoring config compares
distributions with threshold 0.1 (Model Monitor's default). The drift job compares live
captured features against these files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BUCKETS = 10
DRIFT_THRESHOLD = 0.1


def _inferred_type(column: np.ndarray) -> str:
    return "Integral" if np.all(np.equal(np.mod(column, 1), 0)) else "Fractional"


def statistics(x: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    features = []
    for j, name in enumerate(names):
        col = x[:, j].astype(np.float64)
        present = col[np.isfinite(col)]
        counts, edges = np.histogram(present, bins=N_BUCKETS)
        features.append(
            {
                "name": name,
                "inferred_type": _inferred_type(present),
                "numerical_statistics": {
                    "common": {
                        "num_present": int(len(present)),
                        "num_missing": int(len(col) - len(present)),
                    },
                    "mean": float(present.mean()),
                    "sum": float(present.sum()),
                    "std_dev": float(present.std()),
                    "min": float(present.min()),
                    "max": float(present.max()),
                    "distribution": {
                        "kll": {
                            "buckets": [
                                {
                                    "lower_bound": float(lo),
                                    "upper_bound": float(hi),
                                    "count": float(c),
                                }
                                for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
                            ]
                        }
                    },
                },
            }
        )
    return {"version": 0.0, "dataset": {"item_count": int(len(x))}, "features": features}


def constraints(x: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    features = []
    for j, name in enumerate(names):
        col = x[:, j]
        features.append(
            {
                "name": name,
                "inferred_type": _inferred_type(col[np.isfinite(col)]),
                "completeness": float(np.isfinite(col).mean()),
                "num_constraints": {"is_non_negative": bool((col[np.isfinite(col)] >= 0).all())},
            }
        )
    return {
        "version": 0.0,
        "features": features,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": DRIFT_THRESHOLD,
                "comparison_method": "Robust",
            },
        },
    }
