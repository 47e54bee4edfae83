"""False alarms on real hourly windows: simulated traffic (5,000 customers, the handbook's
defaults) after the baseline week, one window per hour, compared as the hourly job does."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from core.feature_names import FEATURE_NAMES
from model.dataset import with_features
from model.simulator import SimulatorConfig, simulate
from monitor import baseline, drift
from optimize import monitor_baseline

WINDOWS = 100


@pytest.fixture(scope="module")
def hourly(tmp_path_factory: pytest.TempPathFactory) -> tuple[baseline.Baseline, list[np.ndarray]]:
    cfg = SimulatorConfig(n_days=60, start_date=dt.date(2018, 6, 1), seed=3)
    df, x = with_features(simulate(cfg))
    day = (df["tx_datetime"] - df["tx_datetime"].min()).dt.days.to_numpy()
    hour = (df["tx_datetime"].astype("datetime64[s]").astype("int64") // 3600).to_numpy()
    root = tmp_path_factory.mktemp("baseline")
    train = (day >= 33) & (day < 40)  # a training week after 30 days of feature history
    (root / "s.json").write_text(json.dumps(monitor_baseline.statistics(x[train], FEATURE_NAMES)))
    (root / "c.json").write_text(json.dumps(monitor_baseline.constraints(x[train], FEATURE_NAMES)))
    later = day >= 47  # after the 7-day delay, as the serving week would be
    windows = [x[hour == h] for h in np.unique(hour[later])]
    return baseline.load(root / "s.json", root / "c.json"), windows


def test_at_most_5_of_100_undrifted_hourly_windows_alarm(
    hourly: tuple[baseline.Baseline, list[np.ndarray]],
) -> None:
    base, windows = hourly
    compared = [drift.drift(base, w, 1.0, 0.05) for w in windows]
    compared = [r for r in compared if r.distance][:WINDOWS]
    assert len(compared) == WINDOWS
    alarms = [r for r in compared if max(r.distance.values()) > base.comparison_threshold]
    assert len(alarms) <= 5


def test_scaled_amounts_alarm_in_most_hourly_windows(
    hourly: tuple[baseline.Baseline, list[np.ndarray]],
) -> None:
    base, windows = hourly
    caught = 0
    compared = 0
    for w in windows:
        shifted = w.copy()
        shifted[:, 0] *= 1.5
        result = drift.drift(base, shifted, 1.0, 0.05)
        if "amount" in result.distance:
            compared += 1
            caught += result.distance["amount"] > base.comparison_threshold
    assert compared >= WINDOWS and caught >= 0.95 * compared
