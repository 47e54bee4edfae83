"""Replaying a simulated transaction table through a running server as raw transactions.

Shared by the acceptance tests of both stores: transactions go in event order (time, id), in
requests of ``chunk`` transactions; before each request, every label whose transaction's
time plus the label delay falls at or before the request's last event is delivered (a label
may arrive early; it never counts before its time plus the delay, as offline).
``check_retries`` walks a client's retries, exact and not, through a running server.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import httpx
import numpy as np
import pandas as pd

from core.feature_names import FEATURE_NAMES
from core.features import compute_features, epoch_seconds
from core.windows import LABEL_DELAY_S

Post = Callable[[dict[str, object]], httpx.Response]


def replay(df: pd.DataFrame, post: Post, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(served features (rows, 15), served scores (rows,)) in the frame's sorted order."""
    df = df.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
    times = epoch_seconds(df["tx_datetime"])
    features = np.zeros((len(df), len(FEATURE_NAMES)))
    scores = np.zeros(len(df))
    labelled = 0
    for start in range(0, len(df), chunk):
        end = min(start + chunk, len(df))
        due = int(np.searchsorted(times, times[end - 1] - LABEL_DELAY_S, side="right"))
        if due > labelled:
            labels = [
                {"transaction_id": int(i), "fraud": bool(f)}
                for i, f in zip(
                    df["transaction_id"][labelled:due], df["is_fraud"][labelled:due], strict=True
                )
            ]
            r = post({"labels": labels})
            assert r.status_code == 200, r.text
            assert r.json() == {"labels_accepted": len(labels), "unknown_transaction_ids": []}
            labelled = due
        batch = [
            {
                "transaction_id": int(row.transaction_id),
                "customer_id": int(row.customer_id),
                "terminal_id": int(row.terminal_id),
                "amount": float(row.amount),
                "timestamp": _iso(int(t)) if k % 2 else int(t),  # both accepted forms
            }
            for k, (row, t) in enumerate(
                zip(df.iloc[start:end].itertuples(), times[start:end], strict=True)
            )
        ]
        r = post({"transactions": batch, "return_features": True})
        assert r.status_code == 200, r.text
        for k, p in enumerate(r.json()["predictions"]):
            assert p["transaction_id"] == batch[k]["transaction_id"] and not p["replayed"]
            features[start + k] = [p["features"][name] for name in FEATURE_NAMES]
            scores[start + k] = p["score"]
    return features, scores


def offline(df: pd.DataFrame) -> np.ndarray:
    df = df.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
    return compute_features(df)


def assert_features_equal(served: np.ndarray, want: np.ndarray) -> None:
    """Counts exactly; amounts and rates within 1e-6 relative, for every row."""
    for j, name in enumerate(FEATURE_NAMES):
        if "count" in name or name.startswith("is_"):
            np.testing.assert_array_equal(served[:, j], want[:, j], err_msg=name)
        else:
            np.testing.assert_allclose(served[:, j], want[:, j], rtol=1e-6, atol=0, err_msg=name)


def send(url: str, doc: dict[str, object]) -> httpx.Response:
    """POST a JSON document to ``url``/invocations."""
    return httpx.post(
        url + "/invocations",
        content=json.dumps(doc),
        headers={"content-type": "application/json"},
        timeout=60,
    )


def transaction(
    tx_id: str, at: int | str, customer: str = "c-1", terminal: str = "m-1", amount: float = 10.0
) -> dict[str, object]:
    return {
        "transaction_id": tx_id,
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
        "timestamp": at,
    }


def check_retries(url: str, at: int) -> None:
    """A retry with the same fields (the same cents, the same second) is replayed with the
    first answer; the same id with other fields gets 409 naming them, and a request holding
    such a retry records none of its transactions."""

    def post(*items: dict[str, object]) -> httpx.Response:
        return send(url, {"transactions": list(items), "return_features": True})

    def conflict(r: httpx.Response, tx_id: str, fields: str) -> None:
        assert r.status_code == 409, r.text
        assert r.json()["error"] | {"request_id": ""} == {
            "code": "transaction_conflict",
            "message": f"transaction {tx_id!r} was recorded with other fields ({fields}); "
            "a retry must repeat the transaction exactly",
            "request_id": "",
        }

    sent = transaction("dup-1", at, "c-dup", "m-dup", 10.0)
    first = post(sent).json()["predictions"][0]
    again = post(sent | {"amount": 10.001, "timestamp": at + 0.5}).json()["predictions"][0]
    assert again == first | {"replayed": True}
    for changed, fields in [
        ({"amount": 11.0}, "amount"),
        ({"timestamp": at + 1}, "timestamp"),
        ({"customer_id": "c-dup-other"}, "customer_id"),
        ({"terminal_id": "m-dup-other"}, "terminal_id"),
        ({"amount": 11.0, "timestamp": at - 1}, "amount, timestamp"),
    ]:
        conflict(post(sent | changed), "dup-1", fields)
    fresh = transaction("dup-2", at + 2, "c-dup", "m-dup", 5.0)
    conflict(post(fresh, sent | {"amount": 99.0}), "dup-1", "amount")
    conflict(post(fresh, fresh | {"customer_id": "c-dup-other"}), "dup-2", "customer_id")
    # the windows hold dup-1 alone: dup-2 is recorded now, as if the refusals never came
    (p,) = post(fresh).json()["predictions"]
    assert p["replayed"] is False and p["features"]["customer_count_1d"] == 2
    assert p["features"]["customer_mean_amount_1d"] == 7.5
    (p,) = post(transaction("dup-3", at + 3, "c-dup-other", "m-dup", 1.0)).json()["predictions"]
    assert p["features"]["customer_count_1d"] == 1


def check_replay(df: pd.DataFrame, url: str, score_atol: float) -> np.ndarray:
    """Replay ``df`` through the server at ``url``: its features equal the offline table's,
    its scores the feature-vector path's on the offline features. The served features."""
    served, scores = replay(df, lambda doc: send(url, doc))
    want = offline(df)
    assert_features_equal(served, want)
    np.testing.assert_allclose(
        scores, vector_scores(want, lambda doc: send(url, doc)), rtol=0, atol=score_atol
    )
    return served


def vector_scores(x: np.ndarray, post: Post, chunk: int = 500) -> np.ndarray:
    """The package's scores of feature rows through the server's feature-vector path, in
    the same request sizes as the replay (the same batches reach the same backends)."""
    out = []
    for start in range(0, len(x), chunk):
        r = post({"instances": x[start : start + chunk].tolist()})
        assert r.status_code == 200, r.text
        out += [p["score"] for p in r.json()["predictions"]]
    return np.array(out)


def _iso(epoch_s: int) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat().replace("+00:00", "Z")
