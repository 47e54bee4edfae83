"""Raw transactions on POST /invocations with the embedded feature store: a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.feature_names import FEATURE_NAMES
from core.windows import DAY_S, LABEL_DELAY_S
from tests.test_server import Server, _opt_ml
from tests.transaction_replay import (
    assert_features_equal,
    check_replay,
    check_retries,
    offline,
    replay,
)
from tests.transaction_replay import send as replay_send
from tests.transaction_replay import transaction as tx

T0 = 1_533_733_500  # 2018-08-08T13:05:00Z
CARD = "4111111111111111"  # passes Luhn


@pytest.fixture(scope="module")
def server(small_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = _opt_ml(tmp_path_factory.mktemp("opt_ml"), small_package)
    srv = Server(root, {"FRAUD_CAPTURE_DIR": str(root / "capture"), "FRAUD_CAPTURE_PERCENT": "100"})
    srv.wait_healthy()
    yield srv
    srv.stop()


def send(srv: Server, doc: dict[str, object]) -> httpx.Response:
    return replay_send(srv.url, doc)


def features(srv: Server, *txs: dict[str, object]) -> list[dict[str, object]]:
    r = send(srv, {"transactions": list(txs), "return_features": True})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_a_transaction_gets_a_score_a_decision_and_its_features(server: Server) -> None:
    r = send(
        server,
        {"transactions": [tx("a-1", "2018-08-08T13:05:00Z", "c-a", amount=42.5)]},  # type: ignore[arg-type]
    )
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["transaction_id"] == "a-1" and 0 <= p["score"] <= 1
    assert p["decision"] in {"approve", "review", "decline"} and p["replayed"] is False
    assert "features" not in p
    (p,) = features(server, tx("a-2", T0 + 60, "c-a", amount=17.5))
    f = p["features"]
    assert list(f) == list(FEATURE_NAMES)
    assert f["amount"] == 17.5 and f["customer_count_1d"] == 2
    assert f["customer_mean_amount_1d"] == pytest.approx(30.0)


def test_a_retry_is_replayed_and_counted_once(server: Server) -> None:
    (first,) = features(server, tx("b-1", T0 + 100, "c-b"))
    (again,) = features(server, tx("b-1", T0 + 100, "c-b"))
    assert again["replayed"] is True
    assert (again["score"], again["features"]) == (first["score"], first["features"])
    (later,) = features(server, tx("b-2", T0 + 110, "c-b"))
    assert later["features"]["customer_count_1d"] == 2


def test_card_numbers_as_ids_are_refused_and_never_echoed_or_logged(server: Server) -> None:
    for field in ("transaction_id", "customer_id", "terminal_id"):
        item = tx("k-1", T0 + 120) | {field: CARD}
        r = send(server, {"transactions": [item]})
        assert r.status_code == 400 and field in r.json()["error"]["message"]
        assert CARD not in r.text
    r = send(server, {"transactions": [tx("k-2", T0 + 121) | {"customer_id": int(CARD)}]})
    assert r.status_code == 400 and CARD not in r.text
    r = send(server, {"labels": [{"transaction_id": CARD, "fraud": True}]})
    assert r.status_code == 400 and CARD not in r.text
    assert CARD not in server.log.read_text()


def test_events_out_of_order_within_the_skew_are_computed_at_their_own_time(
    server: Server,
) -> None:
    (late,) = features(server, tx("o-2", T0 + 400, "c-o"))
    (early,) = features(server, tx("o-1", T0 + 200, "c-o"))  # 200 s late: within 300 s
    assert late["features"]["customer_count_1d"] == 1
    assert early["features"]["customer_count_1d"] == 1  # the later event is not in its past
    r = send(server, {"transactions": [tx("o-0", T0 - 1000, "c-o")]})
    assert r.status_code == 400 and "FRAUD_MAX_EVENT_SKEW_S=300" in r.text


def test_a_label_counts_from_its_time_plus_the_delay_and_unknown_ids_are_reported(
    server: Server,
) -> None:
    t = T0 + 1000
    features(server, tx("l-1", t, "c-l", "m-l"))
    r = send(
        server,
        {
            "labels": [
                {"transaction_id": "l-1", "fraud": True},
                {"transaction_id": "nope", "fraud": False},
            ]
        },
    )
    assert r.json() == {"labels_accepted": 1, "unknown_transaction_ids": ["nope"]}
    (before,) = features(server, tx("l-2", t + LABEL_DELAY_S - 1, "c-l2", "m-l"))
    (at,) = features(server, tx("l-3", t + LABEL_DELAY_S, "c-l3", "m-l"))
    assert before["features"]["terminal_count_1d"] == 0
    assert at["features"]["terminal_count_1d"] == 1 and at["features"]["terminal_risk_1d"] == 1.0


def test_bad_transactions_get_400_naming_the_field(server: Server) -> None:
    cases = {
        "timestamp": tx("x-1", "2018-08-08T13:05:00"),  # type: ignore[arg-type]  # no zone
        "amount": tx("x-2", T0) | {"amount": "12"},
        "return_features": None,
    }
    for field, item in cases.items():
        doc = {"transactions": [item] if item else [tx("x-3", T0 + 2 * DAY_S)]}
        if field == "return_features":
            doc["return_features"] = "yes"  # type: ignore[assignment]
        r = send(server, doc)
        assert r.status_code == 400 and field in r.json()["error"]["message"], r.text


def test_a_timestamp_outside_1970_to_1e11_s_is_refused_in_either_form(server: Server) -> None:
    # accepted, one event dated in the year 9999 would leave every later one "too old"
    for i, when in enumerate(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", 1e11, -1]):
        r = send(server, {"transactions": [tx(f"far-{i}", when)]})  # type: ignore[arg-type]
        assert r.status_code == 400, r.text
        assert "transactions[0].timestamp" in r.json()["error"]["message"]
        assert "1e11" in r.json()["error"]["message"]


def test_an_event_dated_ahead_of_the_server_clock_is_refused_and_changes_nothing(
    server: Server,
) -> None:
    ahead = int(time.time()) + 3_600
    r = send(server, {"transactions": [tx("ahead-1", ahead, "c-ahead")]})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "transactions[0].timestamp" in message and "FRAUD_MAX_CLOCK_AHEAD_S=300" in message
    # the refused event did not become the store's newest: an event of 2018 still scores (after
    # the label test's events near T0 + 7 days, before the later tests' at 9 and 10 days)
    (p,) = features(server, tx("ahead-2", T0 + 8 * DAY_S, "c-ahead"))
    assert p["features"]["customer_count_1d"] == 1


def test_transactions_and_labels_in_one_request_are_refused(server: Server) -> None:
    doc = {
        "transactions": [tx("y-1", T0 + 9 * DAY_S)],
        "labels": [{"transaction_id": "a-1", "fraud": True}],
    }
    r = send(server, doc)
    assert r.status_code == 400 and "separate requests" in r.text


def test_the_decision_log_and_capture_keep_the_id_and_features(server: Server) -> None:
    features(server, tx("d-1", T0 + 10 * DAY_S, "c-d"))
    deadline = time.monotonic() + 10
    logged = captured = False
    while not (logged and captured) and time.monotonic() < deadline:
        for line in server.log.read_text().splitlines():
            if '"d-1"' in line and '"decision"' in line:
                record = json.loads(line)
                logged = record["features"]["customer_count_1d"] == 1
                assert "c-d" not in line  # customer ids stay out of the decision log
        for path in (server.root / "capture").rglob("*.jsonl"):
            if '\\"d-1\\"' in path.read_text() and "customer_mean_amount_30d" in path.read_text():
                captured = True
        time.sleep(0.05)
    assert logged and captured


def test_a_retry_with_other_fields_gets_409_and_records_nothing(server: Server) -> None:
    check_retries(server.url, T0 + 11 * DAY_S)  # after the events of the tests above


def test_the_embedded_store_survives_a_restart(small_package: Path, tmp_path: Path) -> None:
    root = _opt_ml(tmp_path, small_package)
    srv = Server(root)
    srv.wait_healthy()
    try:
        (first,) = features(srv, tx("r-1", T0, "c-r"))
    finally:
        srv.stop()
    assert (root / "feature-store" / "embedded.pickle").exists()
    srv = Server(root)
    srv.wait_healthy()
    try:
        (again,) = features(srv, tx("r-1", T0, "c-r"))
        (next_one,) = features(srv, tx("r-2", T0 + 5, "c-r"))
    finally:
        srv.stop()
    assert again["replayed"] and again["features"] == first["features"]
    assert next_one["features"]["customer_count_1d"] == 2


def test_the_embedded_store_refuses_the_transaction_path_with_several_workers(
    small_package: Path, tmp_path: Path
) -> None:
    srv = Server(_opt_ml(tmp_path, small_package), {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    srv.wait_healthy()
    try:
        r = send(srv, {"transactions": [tx("w-1", T0)]})
        assert r.status_code == 501 and "FRAUD_FEATURE_STORE=redis://" in r.text
    finally:
        srv.stop()


def test_replayed_weeks_get_the_offline_features_and_scores(
    small_package: Path, small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    srv = Server(_opt_ml(tmp_path, small_package))
    srv.wait_healthy()
    try:
        check_replay(small_transactions, srv.url, score_atol=1e-5)
    finally:
        srv.stop()


def _fraud(artifacts: Path, *args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "--artifacts", str(artifacts), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout)


def test_a_store_warmed_from_history_serves_the_last_weeks_as_offline(
    small_package: Path, small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    df = small_transactions[
        (small_transactions["tx_datetime"] < pd.Timestamp(2018, 7, 11))
        & (small_transactions["customer_id"] < 100)
    ]
    split = pd.Timestamp(2018, 6, 27)
    history, last_weeks = df[df["tx_datetime"] < split], df[df["tx_datetime"] >= split]
    history.to_parquet(tmp_path / "history.parquet", index=False)
    root = _opt_ml(tmp_path / "opt_ml", small_package)
    snapshot = root / "feature-store" / "embedded.pickle"
    loaded = _fraud(
        tmp_path,
        "features",
        "load",
        str(tmp_path / "history.parquet"),
        "--store-path",
        str(snapshot),
    )
    assert loaded["transactions_loaded"] == len(history)
    labels = tmp_path / "labels.csv"
    first = int(history.loc[history["is_fraud"] == 0, "transaction_id"].iloc[0])  # a no-op label
    labels.write_text(f"transaction_id,fraud\n{first},0\n99999999,1\n")
    ingested = _fraud(tmp_path, "labels", "ingest", str(labels), "--store-path", str(snapshot))
    assert ingested == {"labels_accepted": 1, "unknown_transaction_ids": [99999999]}
    srv = Server(root)
    srv.wait_healthy()
    try:
        served, _ = replay(last_weeks, lambda doc: send(srv, doc))
    finally:
        srv.stop()
    full = df.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    want = offline(df)[(full["tx_datetime"] >= split).to_numpy()]
    assert_features_equal(served, want)
