"""The offline table, the embedded store and the Redis store (a real redis-server) agree."""

from __future__ import annotations

import asyncio
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from core.features import compute_features, epoch_seconds
from core.windows import DAY_S, LABEL_DELAY_S, feature_row, id_key, to_cents
from serving.errors import EventTooOld, TransactionConflict
from serving.feature_store.base import FeatureStore, Label, Transaction
from serving.feature_store.embedded import EmbeddedStore
from serving.feature_store.redis_store import RedisStore
from tests.redis_server import RedisServer

BATCH_S = 6 * 3600


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    yield srv
    srv.stop()


def _events(df: pd.DataFrame, delays_s: np.ndarray) -> list[Transaction | Label]:
    t = epoch_seconds(df["tx_datetime"])
    timed: list[tuple[int, int, Transaction | Label]] = []
    for i, ts, c, m, a, fraud, d in zip(
        df["transaction_id"],
        t,
        df["customer_id"],
        df["terminal_id"],
        df["amount"],
        df["is_fraud"],
        delays_s,
        strict=True,
    ):
        key = id_key(int(i))
        # shuffled within 200 s of their time: out of order, inside the 300 s skew
        timed.append(
            (
                int(ts) + int(d[0]),
                1,
                Transaction(
                    int(i), key, id_key(int(c)), id_key(int(m)), int(ts), to_cents(float(a))
                ),
            )
        )
        # labels land in batches every 6 hours (fewer store calls), never past the delay
        timed.append((-(-(int(ts) + int(d[1])) // BATCH_S) * BATCH_S, 0, Label(key, bool(fraud))))
    timed.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in timed]


async def _run(store: FeatureStore, events: list[Transaction | Label]) -> dict[int, list[float]]:
    """Feed the events in runs (one store call per run of transactions or of labels)."""
    out: dict[int, list[float]] = {}
    k = 0
    while k < len(events):
        kind = type(events[k])
        run = []
        while k < len(events) and type(events[k]) is kind and len(run) < 200:
            run.append(events[k])
            k += 1
        if kind is Transaction:
            for tx, r in zip(run, await store.record(run), strict=True):  # type: ignore[arg-type]
                assert not r.replayed
                out[tx.transaction_id] = feature_row(tx.time_s, tx.cents, r.aggregates)  # type: ignore[union-attr]
        else:
            assert all(await store.label(run))  # type: ignore[arg-type]
    return out


async def _both(url: str, events: list[Transaction | Label]) -> list[dict[int, list[float]]]:
    redis_store = RedisStore(url, 300, 5.0)
    try:
        await redis_store.client.call("FLUSHDB")
        return [await _run(EmbeddedStore(300), events), await _run(redis_store, events)]
    finally:
        await redis_store.close()


def test_offline_embedded_and_redis_agree_on_simulated_data(
    small_transactions: pd.DataFrame, redis_server: RedisServer
) -> None:
    df = small_transactions[small_transactions["tx_datetime"] < pd.Timestamp(2018, 7, 12)]
    ids = [int(i) for i in df["transaction_id"]]
    rng = np.random.default_rng(7)
    labels_late = rng.integers(200, 7 * DAY_S - BATCH_S, len(df))  # within the label delay
    # in event order: all three equal, bit for bit
    in_order = _events(df, np.stack([np.zeros(len(df), dtype=np.int64), labels_late], axis=1))
    want = compute_features(df)
    for served in asyncio.run(_both(redis_server.url, in_order)):
        np.testing.assert_array_equal(np.array([served[i] for i in ids]), want)
    # up to 200 s out of order (inside the 300 s skew): each event is read at its own time,
    # so an event answered before an earlier one arrived misses it; both stores alike
    first = df[df["tx_datetime"] < pd.Timestamp(2018, 6, 15)]
    late = rng.integers(0, 200, len(first))
    shuffled = _events(first, np.stack([late, labels_late[: len(first)]], axis=1))
    embedded, redis = asyncio.run(_both(redis_server.url, shuffled))
    assert embedded == redis
    offline_first = compute_features(first).tolist()
    assert [embedded[int(i)] for i in first["transaction_id"]] != offline_first


def test_redis_replays_refuses_late_events_and_reports_unknown_labels(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        store = RedisStore(redis_server.url, 300, 5.0)
        try:
            t = 2_000_000_000
            first = Transaction("x-1", id_key("x-1"), id_key("c"), id_key("m"), t, 1250)
            (a,) = await store.record([first])
            (b,) = await store.record([first])
            assert not a.replayed and b.replayed and a.aggregates == b.aggregates
            assert a.aggregates[:2] == (1, 1250)
            late = Transaction("x-2", id_key("x-2"), id_key("c"), id_key("m"), t - 301, 10)
            with pytest.raises(EventTooOld, match="FRAUD_MAX_EVENT_SKEW_S=300"):
                await store.record([late])
            assert await store.label([Label(id_key("x-1"), True), Label(id_key("no"), True)]) == [
                True,
                False,
            ]
            ttl = await store.client.call("TTL", "fraud:c:" + id_key("c"))
            assert 0 < ttl <= 30 * DAY_S + 300  # keys expire once no window needs them
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_store_snapshot_round_trips(tmp_path: Path) -> None:
    store = EmbeddedStore(300, tmp_path / "s.pickle")
    tx = Transaction(1, id_key(1), "c", "m", 1_000_000, 500)
    first = store.record_one(tx)
    store.write(store.snapshot())
    reopened = EmbeddedStore.open(300, tmp_path / "s.pickle")
    again = reopened.record_one(tx)  # the same terminal and customer after the round trip
    assert again.replayed and again.aggregates == first.aggregates
    with pytest.raises(TransactionConflict, match=re.escape("(amount)")):
        reopened.record_one(tx._replace(cents=501))


def test_the_serving_path_imports_no_pandas() -> None:
    code = (
        "import sys, serving.app, serving.feature_store.embedded, "
        "serving.feature_store.redis_store; print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unreadable_snapshot_starts_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "s.pickle"
    path.write_bytes(b"not a pickle")
    store = EmbeddedStore.open(300, path)
    assert len(store.records) == 0 and store.path == path


def test_a_snapshot_in_an_earlier_format_starts_an_empty_store_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.pickle"
    path.write_bytes(pickle.dumps({"format": 1, "customers": {"c": object()}}))
    with caplog.at_level("ERROR", logger="fraud.serving.feature_store"):
        store = EmbeddedStore.open(300, path)
    assert len(store.records) == 0 and store.customers == {}
    assert "another format" in caplog.text
    saved = EmbeddedStore(300, path)
    saved.record_one(Transaction("t", "1t", "1c", "1m", 1_533_733_500, 100))
    saved.write(saved.snapshot())
    assert EmbeddedStore.open(300, path).label_of("1t") is False  # the current one is read


def test_both_stores_break_ties_at_the_same_second_by_id(redis_server: RedisServer) -> None:
    t = 2_100_000_000
    ids = ["b", "a", "ab", "\u00e9", "a\u00e9"]  # arrival order; code points: a < ab < aé < b < é
    txs = [Transaction(i, id_key(i), "c", "m", t, 100) for i in ids]

    async def counts(store: FeatureStore) -> list[int]:
        return [(await store.record([tx]))[0].aggregates[0] for tx in txs]

    async def both() -> tuple[list[int], list[int]]:
        redis_store = RedisStore(redis_server.url, 300, 5.0)
        try:
            await redis_store.client.call("FLUSHDB")
            return await counts(EmbeddedStore(300)), await counts(redis_store)
        finally:
            await redis_store.close()

    embedded, redis = asyncio.run(both())
    # each counts the events already recorded whose id is at most its own, itself included
    assert embedded == redis == [1, 1, 2, 4, 3]


def _tx(
    tx_id: str, at: int, customer: str = "c", terminal: str = "m", cents: int = 1000
) -> Transaction:
    return Transaction(tx_id, id_key(tx_id), id_key(customer), id_key(terminal), at, cents)


def _store(kind: str, url: str) -> FeatureStore:
    if kind == "embedded":
        return EmbeddedStore(300)
    redis.Redis.from_url(url).flushdb()
    return RedisStore(url, 300, 5.0)


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_a_retry_must_repeat_the_transaction_and_a_conflict_records_nothing(
    kind: str, redis_server: RedisServer
) -> None:
    t = 2_000_000_000

    async def refused(store: FeatureStore, txs: list[Transaction], fields: str) -> int:
        with pytest.raises(TransactionConflict) as caught:
            await store.record(txs)
        assert str(caught.value) == (
            f"transaction {txs[caught.value.index].transaction_id!r} was recorded with other "
            f"fields ({fields}); a retry must repeat the transaction exactly"
        )
        return caught.value.index

    async def scenario(store: FeatureStore) -> None:
        (first,) = await store.record([_tx("t-1", t)])
        (again,) = await store.record([_tx("t-1", t)])
        assert again == (first.aggregates, True)
        for changed, fields in [
            (_tx("t-1", t, cents=1001), "amount"),
            (_tx("t-1", t + 1), "timestamp"),
            (_tx("t-1", t, customer="c-other"), "customer_id"),
            (_tx("t-1", t, terminal="m-other"), "terminal_id"),
            (
                _tx("t-1", t - 1, "c-other", "m-other", 5),
                "customer_id, terminal_id, amount, timestamp",
            ),
        ]:
            assert await refused(store, [changed], fields) == 0
        # a fresh transaction beside a conflicting one is not recorded either
        assert (
            await refused(store, [_tx("t-2", t + 1, cents=500), _tx("t-1", t, cents=1)], "amount")
            == 1
        )
        # nor is an id sent twice in one request with other fields
        assert await refused(store, [_tx("t-3", t + 2), _tx("t-3", t + 3)], "timestamp") == 1
        # sent twice with the same fields: recorded once, then replayed
        a, b = await store.record([_tx("t-4", t + 4, cents=100), _tx("t-4", t + 4, cents=100)])
        assert not a.replayed and b == (a.aggregates, True)
        assert await store.record([_tx("t-1", t), _tx("t-1", t)]) == [again, again]
        # the windows hold t-1 and t-4 only: t-2 is new (at another time), counted with them
        (fresh,) = await store.record([_tx("t-2", t + 5, cents=500)])
        assert not fresh.replayed and fresh.aggregates[:2] == (3, 1000 + 100 + 500)
        (other,) = await store.record([_tx("t-5", t + 6, customer="c-other", cents=7)])
        assert other.aggregates[:2] == (1, 7)
        # terminals, read a label delay later: m holds t-1, t-4, t-2 and t-5; m-other nothing
        later = t + LABEL_DELAY_S + 10
        (m_other,) = await store.record([_tx("t-6", later, terminal="m-other")])
        (m,) = await store.record([_tx("t-7", later + 1)])
        assert m_other.aggregates[6] == 0 and m.aggregates[6] == 4

    async def run() -> None:
        store = _store(kind, redis_server.url)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_labels_mark_and_unmark_and_extreme_amounts_add_up_exactly(
    kind: str, redis_server: RedisServer
) -> None:
    t = 2_000_000_000
    big = 10**14  # the largest amount a request may carry, in cents

    async def scenario(store: FeatureStore) -> None:
        (a,) = await store.record([_tx("l-1", t, cents=big)])
        (b,) = await store.record([_tx("l-2", t + 1, cents=1 - big)])
        assert a.aggregates[:6] == (1, big) * 3 and b.aggregates[:6] == (2, 1) * 3
        assert await store.label([Label(id_key("l-1"), True), Label(id_key("l-2"), False)]) == [
            True,
            True,
        ]
        # a label delay later the terminal windows hold l-1 (fraud) and l-2
        later = t + LABEL_DELAY_S + 1
        (c,) = await store.record([_tx("l-3", later, customer="c-late")])
        assert c.aggregates[6:] == (2, 1) * 3
        assert await store.label([Label(id_key("l-1"), False)]) == [True]  # genuine again
        (d,) = await store.record([_tx("l-4", later + 1, customer="c-late")])
        assert d.aggregates[6:] == (2, 0) * 3
        assert await store.label([Label(id_key("l-1"), True)]) == [True]
        (e,) = await store.record([_tx("l-5", later + 2, customer="c-late")])
        assert e.aggregates[6:] == (2, 1) * 3
        # a replay answers what the first answer said, whatever was labelled since
        assert await store.record([_tx("l-1", t, cents=big)]) == [(a.aggregates, True)]
        if isinstance(store, RedisStore):  # a label keeps the record's expiry
            ttl = await store.client.call("TTL", "fraud:tx:" + id_key("l-1"))
            assert 37 * DAY_S < ttl <= 37 * DAY_S + 300

    async def run() -> None:
        store = _store(kind, redis_server.url)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(run())
