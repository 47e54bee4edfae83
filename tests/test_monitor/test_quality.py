"""Quality once labels arrive (joined by transaction_id or inference id, label-delay rule)
and the per-hour decision rates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.job import run
from monitor.settings import MonitorSettings
from tests.test_monitor.conftest import (
    T0,
    hourly_times,
    monitor_env,
    synthetic_features,
    write_capture,
)

DAYS = 5
MIDNIGHT = T0.replace(hour=0)


def labelled_traffic(
    tmp_path: Path, form: str, bad_days: set[int], n_per_day: int = 800
) -> tuple[Path, dict[str, str]]:
    """DAYS days of traffic, 12 % fraud; scores separate frauds except on ``bad_days``."""
    rng = np.random.default_rng(20)
    n = DAYS * n_per_day
    x = synthetic_features(n, rng)
    labels = (rng.random(n) < 0.12).astype(int)
    day = np.arange(n) // n_per_day
    good = np.where(labels == 1, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.7, n))
    scores = np.where(np.isin(day, list(bad_days)), rng.uniform(0, 1, n), good)
    ids = [f"tx-{i}" for i in range(n)]
    write_capture(
        tmp_path / "cap", x, hourly_times(MIDNIGHT, n, hours=24 * DAYS), form, scores, ids
    )
    key = "transaction_id" if form == "transaction" else "inference_id"
    path = tmp_path / "labels.csv"
    pd.DataFrame({key: ids, "label": labels, "card": [f"c{i % 2000}" for i in range(n)]}).to_csv(
        path, index=False
    )
    end = (MIDNIGHT + dt.timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    start = MIDNIGHT.strftime("%Y-%m-%dT%H:%M:%SZ")
    return path, {
        "start_time": start,
        "end_time": end,
        "label_source": str(path),
        "label_delay_days": "2",
    }


def test_quality_is_reported_only_for_days_older_than_the_label_delay(
    package: Path, tmp_path: Path
) -> None:
    _, extra = labelled_traffic(tmp_path, "transaction", bad_days=set())
    env = monitor_env(package, tmp_path / "cap", tmp_path / "out", **extra)
    env["validation_metrics"] = str(package / "manifest.json")
    report = run(MonitorSettings.from_env(env))
    days = report["quality_by_day"]
    # the window ends 2024-05-06 00:00, labels take 2 days: days ended by 05-04 are labelled
    assert sorted(days) == ["2024-05-01", "2024-05-02", "2024-05-03"]
    for figures in days.values():
        assert figures["auc_roc"] > 0.9 and figures["average_precision"] > 0.5
        assert 0 <= figures["card_precision_at_100"] <= 1
    violations = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())
    assert [v for v in violations["violations"] if "metric_name" in v] == []


def test_quality_drop_on_a_labelled_day_is_a_violation(package: Path, tmp_path: Path) -> None:
    # day 1 is 2024-05-02: random scores there
    _, extra = labelled_traffic(tmp_path, "json", bad_days={1})
    env = monitor_env(package, tmp_path / "cap", tmp_path / "out", **extra)
    env["validation_metrics"] = str(package / "manifest.json")
    run(MonitorSettings.from_env(env))
    violations = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())
    quality = [v for v in violations["violations"] if "metric_name" in v]
    assert {v["metric_name"] for v in quality} >= {"auc_roc", "average_precision"}
    assert all("on 2024-05-02" in v["description"] for v in quality)
    assert all(v["constraint_check_type"] == "LessThanThreshold" for v in quality)


def test_decline_and_review_rates_per_hour(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(400, np.random.default_rng(21))
    scores = np.tile([0.95, 0.6, 0.1, 0.1], 100)  # 25 % decline, 25 % review
    write_capture(tmp_path / "cap", x, hourly_times(T0, 400), "transaction", scores)
    report = run(MonitorSettings.from_env(monitor_env(package, tmp_path / "cap", tmp_path / "o")))
    hour = report["hourly"]["2024-05-01T13"]
    assert hour["rows"] == 400 and hour["decided"] == 400
    assert hour["decline_rate"] == 0.25 and hour["review_rate"] == 0.25
    assert hour["score_p50"] == 0.35 and sum(hour["score_histogram"]) == 400
