"""Decision bands on calibrated scores, chosen on the validation week, versioned on their own.

``decline`` is the lowest score at which the validation precision reaches
``decline_precision`` (a declined genuine customer is the costly error); ``review`` is the
score above which the top ``review_share`` of transactions fall (the review team's capacity).
The scores are the validation-run model's, calibrated, on a week it did not train on; the
final model shares the calibration, so the bands carry over. The file can be replaced at
deploy time without rebuilding the model; its version is a hash of its bands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np

DECISIONS = ("decline", "review", "approve")


def choose_thresholds(
    scores: np.ndarray,
    labels: np.ndarray,
    decline_precision: float = 0.9,
    review_share: float = 0.01,
) -> dict[str, object]:
    from sklearn.metrics import precision_recall_curve  # build time only: the server skips it

    precision, recall, cut = precision_recall_curve(labels, scores)
    ok = np.flatnonzero(precision[:-1] >= decline_precision)
    decline = float(cut[ok[0]]) if len(ok) else float(scores.max()) + 1e-6
    review = float(np.quantile(scores, 1.0 - review_share))
    review = min(review, decline)
    bands = {"decline": round(decline, 6), "review": round(review, 6)}
    stats = {}
    for name, lo, hi in (("decline", decline, np.inf), ("review", review, decline)):
        hit = (scores >= lo) & (scores < hi)
        stats[name] = {
            "share": float(hit.mean()),
            "precision": float(labels[hit].mean()) if hit.any() else 0.0,
            "recall": float(labels[hit].sum() / max(labels.sum(), 1)),
        }
    body = {
        "bands": bands,
        "default": "approve",
        "rule": "decline if score >= decline, review if score >= review, else approve",
    }
    version = hashlib.sha256(json.dumps(bands, sort_keys=True).encode()).hexdigest()[:12]
    return {
        "version": version,
        **body,
        "chosen_on": {
            "data": "validation week, validation-run model, calibrated scores",
            "decline_precision_target": decline_precision,
            "review_share_target": review_share,
            "bands": stats,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }


def decision_names(scores: np.ndarray, bands: tuple[float, float]) -> list[str]:
    """Decision per score given ``bands`` = (decline, review) thresholds."""
    decline, review = bands
    if len(scores) == 1:  # the common single-record request: skip the array work
        s = float(scores[0])
        return ["decline" if s >= decline else "review" if s >= review else "approve"]
    return [DECISIONS[i] for i in decide(scores, {"bands": {"decline": decline, "review": review}})]


def decide(scores: np.ndarray, thresholds: dict[str, object]) -> np.ndarray:
    """Decision index per score: 0 decline, 1 review, 2 approve (see DECISIONS)."""
    bands: dict[str, float] = thresholds["bands"]  # type: ignore[assignment]
    out = np.full(len(scores), 2, dtype=np.int8)
    out[scores >= bands["review"]] = 1
    out[scores >= bands["decline"]] = 0
    return out
