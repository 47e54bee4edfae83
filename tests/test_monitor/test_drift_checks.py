"""Violations of one window against the baseline: drift, missing, type, range, columns."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from monitor.job import run
from monitor.settings import MonitorSettings
from tests.test_monitor.conftest import (
    T0,
    hourly_times,
    monitor_env,
    synthetic_features,
    write_capture,
)


def run_window(package: Path, tmp_path: Path, **extra: str) -> tuple[dict[str, Any], list[Any]]:
    out = tmp_path / "out"
    report = run(MonitorSettings.from_env(monitor_env(package, tmp_path / "cap", out, **extra)))
    return report, json.loads((out / "constraint_violations.json").read_text())["violations"]


def checks(violations: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(v["feature_name"], v["constraint_check_type"]) for v in violations}


def test_undrifted_window_has_no_violation(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(800, np.random.default_rng(1))
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x)))
    report, violations = run_window(package, tmp_path)
    assert violations == []
    assert report["rows"] == 800 and report["unreadable_records"] == 0
    assert set(report["drift"]["distance"]) == {
        n for n in report["drift"]["distance"] if n not in ("is_night", "is_weekend")
    }
    assert "calendar feature" in report["drift"]["not_compared"]["is_night"]


def test_shifted_amounts_are_reported_as_drift_of_amount_only(
    package: Path, tmp_path: Path
) -> None:
    x = synthetic_features(800, np.random.default_rng(2), amount_scale=2.0)
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x)), form="csv")
    report, violations = run_window(package, tmp_path)
    assert checks(violations) == {("amount", "baseline_drift_check")}
    assert report["drift"]["distance"]["amount"] > 0.1
    assert "exceeds threshold: 0.1" in violations[0]["description"]


def test_flipped_flags_drift_in_a_week_long_window(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(2000, np.random.default_rng(3))
    x[:, 1] = 1 - x[:, 1]  # weekend share 2/7 -> 5/7
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x), hours=168))
    end = (T0 + np.timedelta64(168, "h").astype(object)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, violations = run_window(package, tmp_path, end_time=end)
    assert checks(violations) == {("is_weekend", "baseline_drift_check")}


def test_missing_wrong_type_and_negative_values_are_named(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(400, np.random.default_rng(4)).astype(object)
    x[0, 3] = None  # missing customer_count_1d
    x[1, 0] = "12.50"  # a string amount
    x[2, 5] = 2.5  # customer_count_7d is Integral in the baseline
    x[3, 7] = -1.0  # a negative customer_count_30d
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x)))
    _, violations = run_window(package, tmp_path)
    assert checks(violations) == {
        ("customer_count_1d", "completeness_check"),
        ("amount", "data_type_check"),
        ("customer_count_7d", "data_type_check"),
        ("customer_count_30d", "range_check"),
    }


def test_short_and_long_rows_are_column_violations(package: Path, tmp_path: Path) -> None:
    cap = tmp_path / "cap" / "fraud-ep" / "AllTraffic" / T0.strftime("%Y/%m/%d/%H")
    cap.mkdir(parents=True)
    lines = []
    for i, n in enumerate((14, 16, 15)):
        record = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": ",".join(["1"] * n),
                    "encoding": "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "text/csv",
                    "mode": "OUTPUT",
                    "data": "0.1",
                    "encoding": "CSV",
                },
            },
            "eventMetadata": {"eventId": f"e{i}", "inferenceTime": f"2024-05-01T13:00:0{i}Z"},
            "eventVersion": "0",
        }
        lines.append(json.dumps(record))
    lines.append("{not json")
    (cap / "a.jsonl").write_text("\n".join(lines) + "\n")
    report, violations = run_window(package, tmp_path)
    assert ("", "missing_column_check") in checks(violations)
    assert ("", "extra_column_check") in checks(violations)
    assert report["records"] == 4 and report["unreadable_records"] == 1
    assert report["first_unreadable"].startswith("record 4")
    # CSV responses carry scores but no decision: no decision rates rather than zeros
    hour = report["hourly"]["2024-05-01T13"]
    assert hour["decided"] == 0 and "decline_rate" not in hour and hour["score_p50"] == 0.1


def test_small_window_reports_insufficient_data_not_drift(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(60, np.random.default_rng(5), amount_scale=3.0)
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x)))
    report, violations = run_window(package, tmp_path)
    assert violations == [] and report["drift"]["distance"] == {}
    assert report["drift"]["not_compared"]["amount"].startswith("insufficient data: 60 values")


def test_records_outside_the_window_are_skipped(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(400, np.random.default_rng(6))
    # the second half lands in the next hour: outside [T0, T0 + 1 h)
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x), hours=2))
    report, _ = run_window(package, tmp_path)
    assert report["rows"] == 200 and report["files"] == 1


def test_earlier_reports_join_the_plot_history(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(800, np.random.default_rng(7))
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x), hours=2))
    first, _ = run_window(package, tmp_path)
    assert first["history_runs"] == 0
    later = (T0 + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = monitor_env(package, tmp_path / "cap", tmp_path / "second", end_time=later,
                      start_time="", report_history=str(tmp_path / "out"))  # fmt: skip
    second = run(MonitorSettings.from_env(env))
    assert second["history_runs"] == 1
    assert (tmp_path / "second" / "monitor.png").stat().st_size > 0
