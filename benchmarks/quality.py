"""Model quality for the benchmark report: ours vs XGBoost, read from the evaluation
artefacts that ``fraud evaluate`` writes (nothing is retrained here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.errors import MeasurementFailed, ResultsFormatError

METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


def read(evaluation: Path) -> dict[str, Any]:
    """Test-week metrics of both models, their ratios, and the prequential difference when
    the evaluation ran folds."""
    if not evaluation.is_file():
        raise MeasurementFailed(
            f"no evaluation at {evaluation}: run `make evaluate` (or `fraud evaluate`) first"
        )
    try:
        data = json.loads(evaluation.read_text())
        ours, xgb = data["models"]["fraudnet"], data["models"]["xgboost"]
        out: dict[str, Any] = {
            "fraudnet": {m: float(ours[m]) for m in METRICS},
            "xgboost": {m: float(xgb[m]) for m in METRICS},
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsFormatError(
            f"{evaluation} is not an evaluation this version writes ({exc!r}); rerun "
            "`fraud evaluate`"
        ) from exc
    out["ratios"] = {f"{m}_over_xgboost": ours[m] / xgb[m] for m in METRICS}
    preq = data.get("prequential") or {}
    if "difference" in preq:
        out["prequential_difference"] = preq["difference"]
        out["prequential_beats"] = preq.get("beats", {})
    return out
