"""The ``monitor`` executable under the Processing / Model Monitor contract, end to end:
environment only, a local ``/opt/ml/processing`` tree, then a plain Processing job reading
an S3 prefix and calling PutMetricData (moto's server on loopback)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from monitor.baseline import load
from tests.test_monitor.conftest import (
    ENDPOINT,
    T0,
    hourly_times,
    monitor_env,
    synthetic_features,
    write_capture,
)

ROOT = Path(__file__).resolve().parents[2]
STAT_TYPES = {"Integral", "Fractional", "String", "Unknown"}
CHECK_TYPES = {
    "data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
    "extra_column_check", "categorical_values_check", "range_check", "LessThanThreshold",
}  # fmt: skip


def run_monitor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "monitor.main"],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def check_statistics_schema(stats: dict[str, Any]) -> None:
    """Model Monitor's documented statistics.json layout (numerical features)."""
    assert isinstance(stats["version"], float) and isinstance(stats["dataset"]["item_count"], int)
    for feature in stats["features"]:
        assert feature["inferred_type"] in STAT_TYPES
        numerical = feature["numerical_statistics"]
        assert set(numerical["common"]) == {"num_present", "num_missing"}
        for key in ("mean", "sum", "std_dev", "min", "max"):
            assert isinstance(numerical[key], float), key
        buckets = numerical["distribution"]["kll"]["buckets"]
        assert len(buckets) == 10  # "materialized in 10 buckets. You cannot change this."
        assert sum(b["count"] for b in buckets) == numerical["common"]["num_present"]
        for bucket in buckets:
            assert set(bucket) == {"lower_bound", "upper_bound", "count"}
            assert bucket["lower_bound"] <= bucket["upper_bound"]


def check_violations_schema(violations: dict[str, Any]) -> None:
    assert set(violations) == {"violations"}
    for v in violations["violations"]:
        assert v["constraint_check_type"] in CHECK_TYPES
        assert isinstance(v["description"], str) and v["description"]
        assert ("feature_name" in v) != ("metric_name" in v)


@pytest.fixture()
def processing(tmp_path: Path, package: Path) -> dict[str, Path]:
    """/opt/ml/processing as Model Monitor lays it out: capture input, baseline, output."""
    opt = tmp_path / "opt" / "ml"
    paths = {
        "capture": opt / "processing" / "input" / "endpoint",
        "baseline": opt / "processing" / "baseline",
        "output": opt / "processing" / "resultdata",
        "metrics": opt / "output" / "metrics" / "cloudwatch",
        "message": opt / "output" / "message",
    }
    paths["baseline"].mkdir(parents=True)
    for name in ("statistics.json", "constraints.json"):
        (paths["baseline"] / name).write_bytes((package / "baseline" / name).read_bytes())
    return paths


def contract_env(paths: dict[str, Path], package: Path, **extra: str) -> dict[str, str]:
    env = monitor_env(package, paths["capture"], paths["output"], **extra)
    env |= {
        "baseline_statistics": str(paths["baseline"] / "statistics.json"),
        "baseline_constraints": str(paths["baseline"] / "constraints.json"),
        "metrics_dir": str(paths["metrics"]),
        "monitor_message_path": str(paths["message"]),
    }
    return env


def test_model_monitor_run_writes_reports_and_metric_files(
    processing: dict[str, Path], package: Path
) -> None:
    x = synthetic_features(1000, np.random.default_rng(10), amount_scale=1.6)
    write_capture(processing["capture"], x, hourly_times(T0, len(x)))
    env = contract_env(
        processing,
        package,
        publish_cloudwatch_metrics="Enabled",
        sagemaker_monitoring_schedule_name="fraud-ep-hourly",
        end_time="2024-05-01T14: 00: 00Z",  # the spacing of the contract's own example
        start_time="2024-05-01T13: 00: 00Z",
    )
    result = run_monitor(env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["drifted"] == ["amount"] and summary["rows"] == 1000

    out = processing["output"]
    stats = json.loads((out / "statistics.json").read_text())
    check_statistics_schema(stats)
    violations = json.loads((out / "constraint_violations.json").read_text())
    check_violations_schema(violations)
    assert [v["feature_name"] for v in violations["violations"]] == ["amount"]
    assert (out / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the window's statistics read back as a baseline (same schema both ways)
    assert load(out / "statistics.json", processing["baseline"] / "constraints.json").names

    lines = (processing["metrics"] / "cloudwatch_metrics.jsonl").read_text().splitlines()
    metrics = {m["MetricName"]: m for m in map(json.loads, lines)}
    drift = metrics["feature_baseline_drift_amount"]
    assert drift["Value"] > 0.1 and drift["Timestamp"] == "2024-05-01T14:00:00Z"
    assert drift["Dimensions"] == [
        {"Name": "Endpoint", "Value": ENDPOINT},
        {"Name": "MonitoringSchedule", "Value": "fraud-ep-hourly"},
    ]
    assert metrics["records"]["Value"] == 1000.0
    # the metrics deploy/templates/monitoring.yaml alarms on
    assert metrics["baseline_drift_violations"]["Value"] == 1.0
    assert 0 <= metrics["decline_rate"]["Value"] <= 1
    assert 0 <= metrics["review_rate"]["Value"] <= 1
    assert "feature_baseline_drift_is_night" not in metrics  # not comparable in one hour


def test_unreadable_baseline_fails_with_a_message(
    processing: dict[str, Path], package: Path
) -> None:
    (processing["baseline"] / "statistics.json").write_text("{")
    processing["capture"].mkdir(parents=True)
    result = run_monitor(contract_env(processing, package))
    assert result.returncode == 1
    message = processing["message"].read_text()
    assert message.startswith("BaselineError") and "statistics.json is not valid JSON" in message


def test_plain_processing_job_reads_its_hour_from_s3_and_puts_metrics(
    tmp_path: Path, package: Path, moto_url: str
) -> None:
    aws = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(
        Bucket="capture", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    # three hours captured; the run's window is the middle one
    x = synthetic_features(1500, np.random.default_rng(11), amount_scale=2.0)
    write_capture(tmp_path / "cap", x, hourly_times(T0 - dt.timedelta(hours=1), len(x), hours=3))
    for path in sorted((tmp_path / "cap").rglob("*.jsonl")):
        key = "datacapture/" + path.relative_to(tmp_path / "cap").as_posix()
        s3.upload_file(str(path), "capture", key)
    s3.put_object(
        Bucket="capture",
        Key="baseline/statistics.json",
        Body=(package / "baseline" / "statistics.json").read_bytes(),
    )
    s3.put_object(
        Bucket="capture",
        Key="baseline/constraints.json",
        Body=(package / "baseline" / "constraints.json").read_bytes(),
    )
    env = monitor_env(package, tmp_path, tmp_path / "out", **aws)
    env |= {
        "dataset_source": "s3://capture/datacapture",
        "baseline_statistics": "s3://capture/baseline/statistics.json",
        "baseline_constraints": "s3://capture/baseline/constraints.json",
        "start_time": "",  # the scheduler passes only end_time: one hour before it
        "publish_cloudwatch_metrics": "Enabled",
        "metrics_dir": str(tmp_path / "metrics"),
    }
    result = run_monitor(env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "monitoring_report.json").read_text())
    assert report["files"] == 1 and report["rows"] == 500
    assert report["start_time"] == "2024-05-01T13:00:00Z"
    cloudwatch = boto3.client(
        "cloudwatch",
        endpoint_url=moto_url,
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    names = {
        m["MetricName"]
        for m in cloudwatch.list_metrics(Namespace="/aws/sagemaker/Endpoints/data-metrics")[
            "Metrics"
        ]
    }
    assert {"feature_baseline_drift_amount", "records", "decline_rate"} <= names
