"""schemathesis hooks for the HTTP contract runs: a check that no response leaks a traceback,
and one that a transaction the server just scored is held for its label and its retry.

``scored_transactions_are_held`` follows each 200 to a ``{"transactions": [...]}`` request
with two requests of its own: labels for the transactions that response recorded (answered
``replayed: false``, their id sent once), then the same request bytes again. The store only
forgets a record once its transaction is older than the skew allows (``record_ttl_s``
exceeds the skew), so the retry tells the two cases apart without knowing what else the run
sent meanwhile: answered 200, each of those transactions must come back ``replayed: true``
with its first decision and score, and none may have been unknown to the label before it;
refused as ``event_too_old``, the record was rightly forgotten. Anything else (503 under
load) proves nothing either way and passes. A transaction answered ``replayed: true`` the
first time is left out: its id may have been recorded with other fields by an earlier
request, and what a reused id should get is not this check's question.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import orjson
import schemathesis

LEAKS = ("Traceback (most recent call last)", 'File "/')
FOLLOW_UP_TIMEOUT_S = 30.0
SCORE_ATOL = 1e-6  # float32 scores; batching must not move them (DESIGN.md)


@schemathesis.check
def no_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    text = response.text or ""
    leaked = [marker for marker in LEAKS if marker in text]
    if leaked:
        raise AssertionError(f"the response carries a traceback: {text[:300]!r}")
    return None


def _first_recorded(response: Any) -> dict[int, dict[str, Any]]:
    """Position -> prediction, for each transaction this 200 recorded in the store (answered
    ``replayed: false``) whose id the request sent once; empty for any other response."""
    if response.status_code != 200 or b'"transaction_id"' not in (response.content or b""):
        return {}
    try:
        doc = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list) or not predictions:
        return {}
    if not all(isinstance(p, dict) and "replayed" in p for p in predictions):
        return {}  # feature vectors or labels
    if any(p.get("degraded") for p in predictions):
        return {}  # decided while the store was down: nothing was recorded yet
    sent = Counter((type(p["transaction_id"]), p["transaction_id"]) for p in predictions)
    return {
        i: p
        for i, p in enumerate(predictions)
        if not p["replayed"] and sent[type(p["transaction_id"]), p["transaction_id"]] == 1
    }


def _post(url: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={"Content-Type": content_type}, timeout=FOLLOW_UP_TIMEOUT_S
    )


@schemathesis.check
def scored_transactions_are_held(ctx: Any, response: Any, case: Any) -> bool | None:
    recorded = _first_recorded(response)
    if not recorded:
        return None
    ids = [p["transaction_id"] for p in recorded.values()]
    request = response.request
    labels = orjson.dumps({"labels": [{"transaction_id": tx_id, "fraud": False} for tx_id in ids]})
    labelled = _post(request.url, labels, "application/json")
    if labelled.status_code != 200:
        return None
    unknown = labelled.json()["unknown_transaction_ids"]
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    retried = _post(request.url, body, request.headers.get("Content-Type", "application/json"))
    if retried.status_code == 400 and retried.json()["error"]["code"] == "event_too_old":
        return None  # forgotten since: older than the skew behind the newest event
    if retried.status_code != 200:
        return None
    again = retried.json()["predictions"]
    if any(p.get("degraded") for p in again):
        return None
    fresh = [again[i]["transaction_id"] for i in recorded if not again[i]["replayed"]]
    if fresh:
        raise AssertionError(
            f"the retry of transactions just scored answered replayed: false for {fresh!r}"
        )
    changed = [
        (p["transaction_id"], (p["decision"], p["score"]), (q["decision"], q["score"]))
        for p, q in ((p, again[i]) for i, p in recorded.items())
        if p["decision"] != q["decision"] or abs(p["score"] - q["score"]) > SCORE_ATOL
    ]
    if changed:
        raise AssertionError(
            f"the retry of the same request got other answers (id, first, retry): {changed!r}"
        )
    if unknown:
        raise AssertionError(
            "labels for transactions the server had just scored, and still holds, "
            f"were answered as unknown: {unknown!r}"
        )
    return None
