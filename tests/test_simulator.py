from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from model.errors import DataError
from model.simulator import (
    CUSTOMER_COMPROMISE_DAYS,
    LARGE_AMOUNT,
    TERMINAL_COMPROMISE_DAYS,
    Simulation,
    SimulatorConfig,
    simulate,
    summarize,
)
from tests.conftest import SMALL


def _day(sim: Simulation) -> np.ndarray:
    start = pd.Timestamp(SMALL.start_date)
    return (sim.transactions["tx_datetime"] - start).dt.days.to_numpy()


def test_same_seed_gives_identical_frames_and_another_seed_differs() -> None:
    cfg = dataclasses.replace(SMALL, n_days=20)
    pd.testing.assert_frame_equal(simulate(cfg), simulate(cfg))
    other = simulate(dataclasses.replace(cfg, seed=cfg.seed + 1))
    assert not other["amount"].head(100).equals(simulate(cfg)["amount"].head(100))


def test_rows_are_in_event_time_order_with_positional_ids(small_transactions: pd.DataFrame) -> None:
    assert small_transactions["tx_datetime"].is_monotonic_increasing
    assert (
        small_transactions["transaction_id"].to_numpy() == np.arange(len(small_transactions))
    ).all()
    seconds = small_transactions["tx_datetime"] - small_transactions["tx_datetime"].dt.normalize()
    assert (seconds.dt.total_seconds() > 0).all()


def test_every_amount_over_220_is_fraud(small_transactions: pd.DataFrame) -> None:
    large = small_transactions["amount"] > LARGE_AMOUNT
    assert large.sum() > 0
    assert (small_transactions.loc[large, "is_fraud"] == 1).all()


def test_labels_and_scenarios_agree(small_transactions: pd.DataFrame) -> None:
    fraud = small_transactions["is_fraud"] == 1
    assert (small_transactions.loc[fraud, "fraud_scenario"] > 0).all()
    assert (small_transactions.loc[~fraud, "fraud_scenario"] == 0).all()
    assert set(small_transactions.loc[fraud, "fraud_scenario"].unique()) == {1, 2, 3}


def test_compromised_terminals_are_fraud_for_28_days(small_simulation: Simulation) -> None:
    df, day = small_simulation.transactions, _day(small_simulation)
    terminal = df["terminal_id"].to_numpy()
    fraud = df["is_fraud"].to_numpy()
    checked = 0
    for t, start in small_simulation.compromised_terminals:
        inside = (terminal == t) & (day >= start) & (day < start + TERMINAL_COMPROMISE_DAYS)
        assert (fraud[inside] == 1).all()
        checked += int(inside.sum())
    assert checked > 0


def test_compromised_customers_lose_a_third_of_their_window(small_simulation: Simulation) -> None:
    df, day = small_simulation.transactions, _day(small_simulation)
    customer = df["customer_id"].to_numpy()
    scenario3 = df["fraud_scenario"].to_numpy() == 3
    for c, start in small_simulation.compromised_customers:
        inside = (customer == c) & (day >= start) & (day < start + CUSTOMER_COMPROMISE_DAYS)
        assert (df["is_fraud"].to_numpy()[inside] == 1).sum() >= inside.sum() // 3
    # every scenario-3 row lies inside some compromised customer's window
    windows = {
        (c, d)
        for c, s in small_simulation.compromised_customers
        for d in range(s, s + CUSTOMER_COMPROMISE_DAYS)
    }
    rows = np.flatnonzero(scenario3)
    assert len(rows) > 0
    assert all((int(customer[i]), int(day[i])) in windows for i in rows)


def test_terminals_lie_within_the_radius_of_their_customer(small_simulation: Simulation) -> None:
    df = small_simulation.transactions
    c = small_simulation.customer_xy[df["customer_id"].to_numpy()]
    t = small_simulation.terminal_xy[df["terminal_id"].to_numpy()]
    assert (np.linalg.norm(c - t, axis=1) <= SMALL.radius).all()


def test_summary_counts_frauds_by_scenario(small_transactions: pd.DataFrame) -> None:
    report = summarize(small_transactions)
    assert report["n_transactions"] == len(small_transactions)
    assert sum(report["frauds_by_scenario"].values()) == report["n_frauds"]  # type: ignore[attr-defined]


def test_default_dataset_lands_on_the_handbook_totals() -> None:
    report = summarize(simulate(SimulatorConfig(seed=8)))
    assert abs(report["n_transactions"] / 1_754_155 - 1) < 0.02  # type: ignore[operator]
    assert abs(report["fraud_rate"] * 100 - 0.837) < 0.05  # type: ignore[operator]
    reference = {"1": 973, "2": 9_077, "3": 4_631}
    for scenario, count in report["frauds_by_scenario"].items():  # type: ignore[attr-defined]
        assert abs(count / reference[scenario] - 1) < 0.10, scenario


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(DataError, match="n_customers"):
        SimulatorConfig(n_customers=0)
