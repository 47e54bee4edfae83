"""Raw transactions through a running server backed by a real redis-server."""

from __future__ import annotations

import itertools
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from optimize.precision import SCORE_TOLERANCE
from tests.redis_server import RedisServer
from tests.test_server import Server, _opt_ml
from tests.transaction_replay import check_replay, check_retries, send
from tests.transaction_replay import transaction as _item


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    yield srv
    srv.stop()


def _send(srv: Server, doc: dict[str, object]) -> httpx.Response:
    return send(srv.url, doc)


@pytest.mark.parametrize("workers", [1, 2])
def test_replayed_weeks_get_the_offline_features_and_scores_with_redis(
    workers: int,
    small_package: Path,
    small_transactions: pd.DataFrame,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    # the first 40 days (every window full: 30 days, 37 for terminals) of a third of the
    # customers, CI-sized; terminal windows are computed over the same rows on both sides
    df = small_transactions[
        (small_transactions["tx_datetime"] < pd.Timestamp(2018, 7, 11))
        & (small_transactions["customer_id"] < 100)
    ]
    srv = Server(
        _opt_ml(tmp_path, small_package),
        {
            "FRAUD_FEATURE_STORE": redis_server.url,
            "FRAUD_STORE_DEADLINE_MS": "10000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        },
    )
    srv.wait_healthy()
    try:
        served = check_replay(df, srv.url, SCORE_TOLERANCE)
        # a retry to any worker is a replay, counted once
        first = df.sort_values(["tx_datetime", "transaction_id"]).iloc[-1]
        item = {
            "transaction_id": int(first.transaction_id),
            "customer_id": int(first.customer_id),
            "terminal_id": int(first.terminal_id),
            "amount": float(first.amount),
            "timestamp": first.tx_datetime.isoformat() + "Z",
        }
        for _ in range(3):
            r = _send(srv, {"transactions": [item], "return_features": True})
            assert r.status_code == 200 and r.json()["predictions"][0]["replayed"] is True
            assert r.json()["predictions"][0]["features"]["amount"] == served[-1][0]
    finally:
        srv.stop()


T0 = 1_533_733_500


def test_a_retry_with_other_fields_gets_409_and_records_nothing_with_redis(
    small_package: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    srv = Server(_opt_ml(tmp_path, small_package), {"FRAUD_FEATURE_STORE": redis_server.url})
    srv.wait_healthy()
    try:
        check_retries(srv.url, T0)
    finally:
        srv.stop()


def test_a_redis_outage_is_answered_by_the_fallback_policy_and_backfilled(
    small_package: Path, tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    store = RedisServer(tmp_path / "redis", persistent=True)
    policies = {"default": {"mode": "open", "review_above": 100}, "m-closed": {"mode": "closed"}}
    srv = Server(
        _opt_ml(tmp_path, small_package),
        {
            "FRAUD_FEATURE_STORE": store.url,
            "FRAUD_STORE_DEADLINE_MS": "200",
            "FRAUD_FALLBACK_POLICIES": json.dumps(policies),
        },
    )
    srv.wait_healthy()
    clock = itertools.count(T0)
    statuses: list[int] = []
    stop = threading.Event()

    def background_load() -> None:
        with httpx.Client(timeout=30) as client:
            for k in itertools.count():
                if stop.is_set():
                    return
                item = _item(f"bg-{k}", next(clock), f"bg-{k % 7}", "m-bg", 10.0)
                r = client.post(srv.url + "/invocations", json={"transactions": [item]})
                statuses.append(r.status_code)

    sent = itertools.count(1)

    def post(item: dict[str, object]) -> dict[str, object]:
        r = _send(srv, {"transactions": [item], "return_features": True})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    def mine(terminal: str = "m-1", amount: float = 10.0) -> dict[str, object]:
        return post(_item(f"o-{next(sent)}", next(clock), "c-out", terminal, amount))

    loader = threading.Thread(target=background_load)
    loader.start()
    try:
        assert not any(mine().get("degraded") for _ in range(5))
        store.stop()  # SIGKILL
        # a retry of o-1 with another amount cannot be checked now; the backfill skips it
        assert post(_item("o-1", next(clock), "c-out", "m-1", 99.0))["degraded"]
        during = [mine() for _ in range(3)]
        assert all(p["degraded"] and p["score"] is None for p in during)
        assert [p["decision"] for p in during] == ["approve"] * 3
        assert mine("m-closed")["decision"] == "decline"
        assert mine(amount=150.0)["decision"] == "review"
        assert httpx.get(srv.url + "/ping").status_code == 200  # SageMaker keeps the instance
        assert "fraud_store_degraded_total" in httpx.get(srv.url + "/metrics").text
        store.start()
        answer = mine()
        for _ in range(200):  # until the client reconnects
            if not answer.get("degraded"):
                break
            answer = mine()
        assert not answer.get("degraded")
        # every transaction of the card, those of the outage included, is in its windows
        assert answer["features"]["customer_count_1d"] == next(sent) - 1  # type: ignore[index]
        assert not mine().get("degraded")
        metrics = httpx.get(srv.url + "/metrics").text
        assert "fraud_store_backfill_conflicts_total 1.0" in metrics
    finally:
        stop.set()
        loader.join()
        srv.stop()
        store.stop()
    assert statuses and set(statuses) == {200}
    logged = [
        line for line in srv.log.read_text().splitlines() if "feature store unavailable" in line
    ]
    assert logged  # the outage is logged
    assert "backfill skipped a transaction" in srv.log.read_text()


def test_a_stalled_redis_is_answered_within_the_deadline_and_backfilled(
    small_package: Path, tmp_path: Path
) -> None:
    """A store that accepts connections but does not answer (SIGSTOP): requests are answered
    by the fallback policy while it is still stopped, and once it runs again the next
    request is scored normally with the stalled ones in its windows."""
    (tmp_path / "redis").mkdir()
    store = RedisServer(tmp_path / "redis")
    srv = Server(
        _opt_ml(tmp_path, small_package),
        {"FRAUD_FEATURE_STORE": store.url, "FRAUD_STORE_DEADLINE_MS": "500"},
    )
    srv.wait_healthy()
    clock = itertools.count(T0)
    sent = itertools.count(1)

    def mine() -> dict[str, object]:
        item = _item(f"s-{next(sent)}", next(clock), "c-stall", "m-1", 10.0)
        r = _send(srv, {"transactions": [item], "return_features": True})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    assert store.proc is not None
    try:
        assert not any(mine().get("degraded") for _ in range(3))
        store.proc.send_signal(signal.SIGSTOP)
        try:
            during = [mine() for _ in range(3)]  # answered while the store is stopped
        finally:
            store.proc.send_signal(signal.SIGCONT)
        assert all(p["degraded"] and p["score"] is None for p in during)
        answer = mine()
        for _ in range(200):  # until the client reconnects and the backlog is written
            if not answer.get("degraded"):
                break
            answer = mine()
        assert answer["features"]["customer_count_1d"] == next(sent) - 1  # type: ignore[index]
    finally:
        srv.stop()
        store.stop()


def test_the_round_trip_reference_server_answers_without_touching_redis(
    small_package: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """``benchmarks.redis_floor_server``, the benchmark's reference for one round trip:
    transactions are answered (scored on its constant aggregates) and nothing is written."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    srv = Server(
        _opt_ml(tmp_path, small_package),
        {"FRAUD_FEATURE_STORE": redis_server.url},
        module="benchmarks.redis_floor_server",
    )
    srv.wait_healthy()
    try:
        items = [_item(f"f-{k}", T0 + k, "c-1", "m-1", 10.0) for k in range(3)]
        r = _send(srv, {"transactions": items, "return_features": True})
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert [p["transaction_id"] for p in predictions] == ["f-0", "f-1", "f-2"]
        assert all(p["features"]["customer_count_1d"] == 1 for p in predictions)
        assert not any(p.get("degraded") or p["replayed"] for p in predictions)
        assert client.dbsize() == 0
    finally:
        srv.stop()


def test_an_outage_backlog_survives_a_killed_server(small_package: Path, tmp_path: Path) -> None:
    """Transactions answered during an outage are spooled before their answers; a server
    killed (SIGKILL) before the store came back leaves them on disk, and the next server on
    the same instance writes them into the store first, so the card's windows are whole."""
    (tmp_path / "redis").mkdir()
    store = RedisServer(tmp_path / "redis", persistent=True)
    root = _opt_ml(tmp_path, small_package)
    env = {"FRAUD_FEATURE_STORE": store.url, "FRAUD_STORE_DEADLINE_MS": "500"}
    spool_dir = root / "feature-store" / "backlog"
    clock = itertools.count(T0)
    sent = itertools.count(1)

    def mine(srv: Server) -> dict[str, object]:
        item = _item(f"k-{next(sent)}", next(clock), "c-kill", "m-1", 10.0)
        r = _send(srv, {"transactions": [item], "return_features": True})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    first = Server(root, env)
    second: Server | None = None
    try:
        first.wait_healthy()
        assert not any(mine(first).get("degraded") for _ in range(2))
        store.stop()
        assert all(mine(first)["degraded"] for _ in range(3))
        first.proc.kill()  # SIGKILL: no shutdown, nothing flushed but what was written
        first.proc.wait()
        spooled = [p for p in spool_dir.iterdir() if p.read_bytes()]
        assert len(spooled) == 1 and len(spooled[0].read_bytes().splitlines()) == 3
        store.start()
        second = Server(root, env)
        second.wait_healthy()
        answer = mine(second)
        assert not answer.get("degraded")
        assert answer["features"]["customer_count_1d"] == 6  # type: ignore[index]
        assert not any(p.read_bytes() for p in spool_dir.iterdir())  # written, so emptied
        assert "outage backlog taken over" in second.log.read_text()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        store.stop()
