"""Features against a slow, obviously-correct reference, and the embedded store == offline."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from core.features import FEATURE_NAMES, compute_features, epoch_seconds
from core.windows import TERMINAL_RETENTION_S, feature_row, id_key, to_cents
from serving.errors import EventTooOld
from serving.feature_store.base import Label, Transaction
from serving.feature_store.embedded import BLOCK, PRUNE_SLACK_S, EmbeddedStore

DAY = 86_400


@pytest.fixture(scope="module")
def sample(small_transactions: pd.DataFrame) -> pd.DataFrame:
    # 40 customers' worth of rows keeps the quadratic reference fast; terminal windows are
    # computed over this subset on both sides, so the comparison stays exact
    keep = small_transactions["customer_id"] < 40
    return small_transactions[keep].reset_index(drop=True)


def reference_features(df: pd.DataFrame) -> np.ndarray:
    """Row by row, straight from the definitions in core.features."""
    t = epoch_seconds(df["tx_datetime"])
    amount = df["amount"].to_numpy()
    customer, terminal = df["customer_id"].to_numpy(), df["terminal_id"].to_numpy()
    fraud, tx_id = df["is_fraud"].to_numpy(), df["transaction_id"].to_numpy()
    rows = []
    for i in range(len(df)):
        ts = pd.Timestamp(int(t[i]), unit="s")
        row = [round(amount[i] * 100) / 100, float(ts.weekday() >= 5), float(ts.hour <= 6)]
        seen = (customer == customer[i]) & ((t < t[i]) | ((t == t[i]) & (tx_id <= tx_id[i])))
        for n in (1, 7, 30):
            win = seen & (t > t[i] - n * DAY)
            cents = np.rint(amount[win] * 100).sum()
            row += [float(win.sum()), cents / (win.sum() * 100.0)]
        for n in (1, 7, 30):
            win = (terminal == terminal[i]) & (t <= t[i] - 7 * DAY) & (t > t[i] - (n + 7) * DAY)
            count = int(win.sum())
            row += [float(count), fraud[win].sum() / count if count else 0.0]
        rows.append(row)
    return np.array(rows)


def test_offline_features_match_the_reference(sample: pd.DataFrame) -> None:
    got = compute_features(sample)
    want = reference_features(sample)
    assert got.shape == (len(sample), len(FEATURE_NAMES))
    for j, name in enumerate(FEATURE_NAMES):
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=1e-12, err_msg=name)
    # the windows are not trivially empty: every feature varies
    assert (got.std(axis=0) > 0).all()


def _stream(df: pd.DataFrame, label_delay_s: np.ndarray) -> list[tuple[str, object]]:
    """Transactions in event order and labels ``label_delay_s`` after theirs, interleaved."""
    t = epoch_seconds(df["tx_datetime"])
    events: list[tuple[int, int, str, object]] = [
        (
            int(ts),
            1,
            "tx",
            Transaction(
                int(i), id_key(int(i)), id_key(int(c)), id_key(int(m)), int(ts), to_cents(float(a))
            ),
        )
        for i, ts, c, m, a in zip(
            df["transaction_id"], t, df["customer_id"], df["terminal_id"], df["amount"], strict=True
        )
    ]
    events += [
        (int(ts + d), 0, "label", Label(id_key(int(i)), bool(f)))
        for i, ts, d, f in zip(df["transaction_id"], t, label_delay_s, df["is_fraud"], strict=True)
    ]
    events.sort(key=lambda e: (e[0], e[1]))  # at equal times a label lands before a transaction
    return [(e[2], e[3]) for e in events]


def _run(store: EmbeddedStore, stream: list[tuple[str, object]]) -> dict[object, list[float]]:
    out: dict[object, list[float]] = {}
    for _, item in stream:
        if isinstance(item, Transaction):
            agg = store.record_one(item).aggregates
            out[item.transaction_id] = feature_row(item.time_s, item.cents, agg)
        else:
            assert isinstance(item, Label) and store.label_one(item)
    return out


def test_the_embedded_store_equals_offline_with_late_labels(
    small_transactions: pd.DataFrame,
) -> None:
    df = small_transactions.sample(frac=1.0, random_state=3)  # row order must not matter
    rng = np.random.default_rng(1)
    # labels arrive between 1 s and the full 7-day delay after their transaction
    delays = rng.integers(1, 7 * DAY + 1, size=len(df))
    online = _run(EmbeddedStore(max_skew_s=300), _stream(df, delays))
    got = np.array([online[int(i)] for i in df["transaction_id"]])
    np.testing.assert_array_equal(got, compute_features(df))


def test_a_label_later_than_the_delay_corrects_the_window_once_it_arrives(
    small_transactions: pd.DataFrame,
) -> None:
    df = small_transactions[small_transactions["tx_datetime"] < pd.Timestamp(2018, 7, 1)]
    delays = np.full(len(df), 9 * DAY)  # two days too late for the offline assumption
    online = _run(EmbeddedStore(max_skew_s=300), _stream(df, delays))
    got = np.array([online[int(i)] for i in df["transaction_id"]])
    want = compute_features(df)
    risk_cols = [FEATURE_NAMES.index(f"terminal_risk_{n}d") for n in (1, 7, 30)]
    other = [j for j in range(len(FEATURE_NAMES)) if j not in risk_cols]
    np.testing.assert_array_equal(got[:, other], want[:, other])
    # risks may lag, never exceed the truth: a late label only ever adds frauds
    assert (got[:, risk_cols] <= want[:, risk_cols] + 1e-12).all()
    assert (got[:, risk_cols] < want[:, risk_cols]).any()


def test_store_state_stays_bounded_over_a_long_history() -> None:
    store = EmbeddedStore(max_skew_s=300)
    start = int(pd.Timestamp(dt.date(2018, 1, 1)).timestamp())
    for k in range(400):  # one transaction a day for 400 days on one card and terminal
        store.record_one(Transaction(k, id_key(k), "card", "term", start + k * DAY, 1000))
        store.label_one(Label(id_key(k), k % 2 == 0))
    slack = PRUNE_SLACK_S // DAY  # events past retention wait up to this long to be dropped
    assert len(store.records) <= 38
    assert len(store.terminals["term"].times) <= 38 + slack
    assert len(store.terminals["term"].fraud_times) <= 19 + slack
    assert len(store.customers["card"].keys) <= 31 + slack
    assert len(store.customers["card"].totals) == len(store.customers["card"].keys) + 1


def test_records_leave_a_block_at_a_time_and_replays_answer_across_blocks() -> None:
    store = EmbeddedStore(max_skew_s=300)
    start = int(pd.Timestamp(dt.date(2018, 1, 1)).timestamp())
    step_s = 600  # 144 a day: 38 days of records span two blocks and a part
    answers = {}
    for k in range(5 * BLOCK):
        tx = Transaction(k, id_key(k), f"c{k % 50}", f"m{k % 7}", start + k * step_s, 100 + k)
        answers[k] = store.record_one(tx)
    kept = len(store.records)
    assert kept <= (TERMINAL_RETENTION_S + 300) // step_s + 1
    assert len(store.records.blocks) <= kept // BLOCK + 2  # expired blocks are freed
    assert not store.label_one(Label(id_key(0), True))  # expired: unknown
    for k in (5 * BLOCK - kept, 4 * BLOCK - 1, 4 * BLOCK, 5 * BLOCK - 1):  # blocks' edges
        tx = Transaction(k, id_key(k), f"c{k % 50}", f"m{k % 7}", start + k * step_s, 100 + k)
        again = store.record_one(tx, backfill=True)
        assert again == (answers[k].aggregates, True)
        assert store.label_one(Label(id_key(k), True)) and store.label_of(id_key(k)) is True


def test_events_older_than_the_skew_are_refused() -> None:
    store = EmbeddedStore(max_skew_s=300)
    store.record_one(Transaction(1, id_key(1), "c", "t", 1_000_000, 500))
    store.record_one(Transaction(2, id_key(2), "c", "t", 999_700, 500))  # within the skew
    with pytest.raises(EventTooOld, match="FRAUD_MAX_EVENT_SKEW_S=300"):
        store.record_one(Transaction(3, id_key(3), "c", "t", 999_699, 500))


def test_ids_tie_break_numerically_for_integers_and_by_code_point_for_strings() -> None:
    assert id_key(9) < id_key(10) < id_key(10**19) < id_key("") < id_key("a") < id_key("ab")
    assert id_key("a b") < id_key("a\x7f") < id_key("aé")


def test_calendar_flags_follow_utc_weekday_and_hour() -> None:
    df = pd.DataFrame(
        {
            "transaction_id": [0, 1, 2],
            "tx_datetime": pd.to_datetime(
                ["2018-04-07 06:59:59", "2018-04-09 07:00:00", "2018-04-08 23:00:00"]
            ),
            "customer_id": [1, 2, 3],
            "terminal_id": [1, 2, 3],
            "amount": [1.0, 2.0, 3.0],
            "is_fraud": [0, 0, 0],
        }
    )
    x = compute_features(df)
    assert x[:, FEATURE_NAMES.index("is_weekend")].tolist() == [1.0, 0.0, 1.0]
    assert x[:, FEATURE_NAMES.index("is_night")].tolist() == [1.0, 0.0, 0.0]


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="terminal_id"):
        compute_features(pd.DataFrame({"transaction_id": [1]}))
