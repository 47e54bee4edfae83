"""Metrics of a run: Model Monitor's metric files, or PutMetricData from a plain job.

Under Model Monitor (``publish_cloudwatch_metrics=Enabled``) the container writes JSON lines
to ``/opt/ml/output/metrics/cloudwatch`` in the documented schema (``MetricName``,
``Timestamp``, ``Dimensions``, ``Value``, ``Unit``) and the platform publishes them. Run as a
plain Processing job nothing reads those files, so the monitor calls PutMetricData itself,
in the same namespace with the same dimensions (``Endpoint``, ``MonitoringSchedule``), so
one set of alarms serves both. Names: ``feature_baseline_drift_<feature>`` (Model
Monitor's), ``feature_non_null_<feature>``, and ours: ``records``, ``unreadable_records``,
``decline_rate``, ``review_rate``, ``score_p99``, ``model_quality_<metric>``,
``constraint_violations``, ``baseline_drift_violations`` (the drift alarm's metric).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from monitor.errors import PublishError

PUT_BATCH = 1000  # PutMetricData's limit on metrics per request
METRIC_FILE = "cloudwatch_metrics.jsonl"


def metric(
    name: str, value: float, at: dt.datetime, dimensions: dict[str, str], unit: str = "None"
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Timestamp": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Value": float(value),
        "Unit": unit,
    }


def dimensions(endpoint: str | None, schedule: str | None) -> dict[str, str]:
    out = {}
    if endpoint:
        out["Endpoint"] = endpoint
    out["MonitoringSchedule"] = schedule or f"{endpoint or 'fraud'}-monitor"
    return out


def write_files(metrics: list[dict[str, Any]], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / METRIC_FILE
    path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return path


def put(metrics: list[dict[str, Any]], namespace: str, client: Any = None) -> int:
    """PutMetricData in batches; returns the number of requests made."""
    if client is None:
        import boto3

        client = boto3.client("cloudwatch")
    requests = 0
    for start in range(0, len(metrics), PUT_BATCH):
        data = [
            {**m, "Timestamp": dt.datetime.fromisoformat(m["Timestamp"].replace("Z", "+00:00"))}
            for m in metrics[start : start + PUT_BATCH]
        ]
        try:
            client.put_metric_data(Namespace=namespace, MetricData=data)
        except Exception as exc:  # botocore's errors: one boundary
            raise PublishError(f"PutMetricData to {namespace} failed: {exc}") from exc
        requests += 1
    return requests
