"""Reproduce logged decisions: ``fraud replay REQUEST_ID``.

Every decision record in the server's decision log carries the request id, the package's
model_version, thresholds_version and precision, the score and decision, and the features it
was scored on. Replaying loads the package as the server does (its backends held to the
reference scores), scores the logged features again and says, per record, whether the score
is within the package's tolerance and the decision the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from serving.scorer import Scorer


def records(lines: Iterable[str], request_id: str) -> Iterator[dict[str, Any]]:
    """The decision records of ``request_id`` among JSON log lines (other lines skipped)."""
    for line in lines:
        if request_id not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message") == "decision" and rec.get("request_id") == request_id:
            yield rec


def replay(found: list[dict[str, Any]], scorer: Scorer) -> dict[str, Any]:
    """Per record: logged and replayed score and decision, and whether they match."""
    tolerance = float(scorer.manifest["score_tolerance"])
    out: list[dict[str, Any]] = []
    for rec in found:
        row: dict[str, Any] = {
            "transaction_id": rec.get("transaction_id"),
            "logged_score": rec.get("score"),
            "logged_decision": rec.get("decision"),
        }
        problem = _problem(rec, scorer)
        if problem is None:
            x = np.array([[rec["features"][n] for n in scorer.feature_names]], dtype=np.float32)
            score = float(scorer.score(x)[0])
            decision = scorer.decisions(np.array([score], dtype=np.float32))[0]
            row |= {"replayed_score": score, "replayed_decision": decision}
            row["match"] = (
                abs(score - float(rec["score"])) <= tolerance and decision == rec["decision"]
            )
        else:
            row |= {"match": False, "why": problem}
        out.append(row)
    return {
        "model_version": scorer.model_version,
        "precision": scorer.precision,
        "tolerance": tolerance,
        "records": out,
        "all_match": bool(out) and all(r["match"] for r in out),
    }


def _problem(rec: dict[str, Any], scorer: Scorer) -> str | None:
    if rec.get("degraded"):
        return "decided by the fallback policy (feature store unavailable): no score to replay"
    for key in ("model_version", "thresholds_version", "precision"):
        if rec.get(key) != scorer.versions[key]:
            return f"logged {key} {rec.get(key)!r}, this package has {scorer.versions[key]!r}"
    features = rec.get("features")
    if not isinstance(features, dict) or any(n not in features for n in scorer.feature_names):
        return "the record holds no complete feature set"
    return None


def run(log_path: Path, request_id: str, package: Path) -> dict[str, Any]:
    with log_path.open(errors="replace") as f:
        found = list(records(f, request_id))
    if not found:
        return {"request_id": request_id, "records": [], "all_match": False, "why": "not logged"}
    scorer = Scorer(package, thread_options=[1], timing_budget_s=0.005)
    scorer.load()
    return {"request_id": request_id, **replay(found, scorer)}
