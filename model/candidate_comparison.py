"""The retraining pipeline's decision input: a candidate beside the serving model.

Reads two ``fraud evaluate`` results (``evaluation.json``: the candidate's and the serving
model's, both on the same test week of the same transaction history, each beside XGBoost)
and writes one ``comparison.json`` that the pipeline's Condition step reads by JSON path::

    {"candidate": {metric: value}, "serving": {...}, "xgboost": {...},
     "candidate_better": bool}

``candidate_better``: higher average precision than the serving model and card
precision@100 no lower, the rule the pipeline registers a model on.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


def compare(candidate: dict[str, Any], serving: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = candidate["models"]["fraudnet"], serving["models"]["fraudnet"]
    out: dict[str, Any] = {
        "candidate": {m: float(ours[m]) for m in METRICS},
        "serving": {m: float(theirs[m]) for m in METRICS},
        "xgboost": {m: float(candidate["models"]["xgboost"][m]) for m in METRICS},
    }
    out["candidate_better"] = bool(
        ours["average_precision"] > theirs["average_precision"]
        and ours["card_precision_at_100"] >= theirs["card_precision_at_100"]
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--serving", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = compare(json.loads(args.candidate.read_text()), json.loads(args.serving.read_text()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
