from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model.dataset import day_index, make_split, read_transactions, with_features
from model.errors import DataError
from model.ulb import ULB_FEATURES, read_ulb


def test_split_windows_follow_the_protocol(small_transactions: pd.DataFrame) -> None:
    df = small_transactions
    split = make_split(df, dt.date(2018, 7, 25))
    days = day_index(df)
    start = (dt.date(2018, 7, 25) - dt.date(1970, 1, 1)).days
    assert set(np.unique(days[split.train])) == set(range(start, start + 7))
    assert set(np.unique(days[split.test])) == set(range(start + 14, start + 21))


def test_split_drops_cards_known_compromised_before_each_test_day(
    small_transactions: pd.DataFrame,
) -> None:
    df = small_transactions
    split = make_split(df, dt.date(2018, 7, 25))
    days, cust = day_index(df), df["customer_id"].to_numpy()
    fraud = df["is_fraud"].to_numpy() == 1
    start = (dt.date(2018, 7, 25) - dt.date(1970, 1, 1)).days
    known_in_training = set(cust[split.train][fraud[split.train]])
    assert known_in_training and not known_in_training & set(cust[split.test])
    for i in range(7):
        test_day = split.test[days[split.test] == start + 14 + i]
        known = set(cust[(days >= start + 7) & (days <= start + 6 + i) & fraud])
        assert not known & set(cust[test_day])
    all_test_days = np.flatnonzero((days >= start + 14) & (days < start + 21))
    assert len(split.test) < len(all_test_days)


def test_an_empty_training_window_is_named(small_transactions: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="training window 2017-01-01"):
        make_split(small_transactions, dt.date(2017, 1, 1))


def test_tables_with_missing_or_extra_columns_are_refused(
    small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    bad = small_transactions.head(50).drop(columns=["terminal_id"]).assign(card_number="x")
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    with pytest.raises(
        DataError, match=r"missing columns \['terminal_id'\].*unexpected columns \['card_number'\]"
    ):
        read_transactions(path)


def test_csv_and_parquet_give_the_same_features(
    small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    head = small_transactions.head(2_000)
    head.to_csv(tmp_path / "t.csv", index=False)
    from_csv = read_transactions(tmp_path / "t.csv")
    np.testing.assert_allclose(with_features(from_csv)[1], with_features(head)[1])


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read .*broken.parquet"):
        read_transactions(path)


def _write_ulb(path: Path, n: int = 200, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 28)), columns=[f"V{i}" for i in range(1, 29)])
    df.insert(0, "Time", np.sort(rng.uniform(0, 172_800, n)).round())
    df["Amount"] = rng.exponential(80, n).round(2)
    df["Class"] = (rng.random(n) < 0.05).astype(int)
    df.to_csv(path, index=False)


def test_ulb_loader_reads_the_public_schema(tmp_path: Path) -> None:
    _write_ulb(tmp_path / "creditcard.csv")
    features, labels = read_ulb(tmp_path / "creditcard.csv")
    assert list(features.columns) == list(ULB_FEATURES)
    assert features.shape == (200, 30) and labels.shape == (200,)
    assert set(np.unique(labels)) <= {0, 1}


def test_ulb_loader_names_missing_columns_and_bad_labels(tmp_path: Path) -> None:
    _write_ulb(tmp_path / "c.csv")
    df = pd.read_csv(tmp_path / "c.csv")
    df.drop(columns=["V7"]).to_csv(tmp_path / "missing.csv", index=False)
    from model.errors import UlbFormatError

    with pytest.raises(UlbFormatError, match=r"missing columns \['V7'\]"):
        read_ulb(tmp_path / "missing.csv")
    df.assign(Class=df["Class"].replace({0: 2})).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(UlbFormatError, match="Class must be 0 or 1; data row 1"):
        read_ulb(tmp_path / "labels.csv")
