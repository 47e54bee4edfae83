"""Drift applied to simulated transactions from a date on (``fraud data --drift-from``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from model.drift_scenarios import NEW_SCENARIO, DriftConfig, apply_drift

FROM = dt.date(2018, 7, 20)


def test_drift_changes_only_rows_from_the_start_date(small_transactions: pd.DataFrame) -> None:
    cfg = DriftConfig(FROM, amount_scale=2.0, night_share=0.5, new_fraud_customers_per_day=2)
    out = apply_drift(small_transactions, cfg)
    start = pd.Timestamp(FROM)
    before, after = out[out["tx_datetime"] < start], out[out["tx_datetime"] >= start]
    original = small_transactions[small_transactions["tx_datetime"] < start]
    pd.testing.assert_frame_equal(before.reset_index(drop=True), original.reset_index(drop=True))
    assert after["amount"].sum() == pytest.approx(
        2 * small_transactions.loc[small_transactions["tx_datetime"] >= start, "amount"].sum(),
        rel=1e-4,
    )
    night = (after["tx_datetime"].dt.hour <= 6).mean()
    assert 0.5 < night < 0.65  # half moved to 00-06 h, plus the few already there
    assert (after["fraud_scenario"] == NEW_SCENARIO).sum() > 0
    assert (out["transaction_id"].to_numpy() == np.arange(len(out))).all()
    assert out["tx_datetime"].is_monotonic_increasing


def test_same_seed_same_frame(small_transactions: pd.DataFrame) -> None:
    cfg = DriftConfig(FROM, night_share=0.2, new_fraud_customers_per_day=1, seed=4)
    pd.testing.assert_frame_equal(
        apply_drift(small_transactions, cfg), apply_drift(small_transactions, cfg)
    )
