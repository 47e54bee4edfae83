"""One monitoring run: read the window's capture, compare, measure, write, publish.

Writes to ``output_path``: ``statistics.json`` and ``constraint_violations.json`` (Model
Monitor's schemas; data checks and model-quality checks in one list),
``monitoring_report.json`` (ours: counts, drift distances and the checks skipped with
their reason, per-hour rates and scores, per-day quality, records/s) and ``monitor.png``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from monitor import baseline as baseline_files
from monitor import cloudwatch, drift, plot, quality
from monitor.records import Window
from monitor.settings import MonitorSettings
from monitor.sources import capture_files, recent_reports

REPORTS = ("statistics.json", "constraint_violations.json", "monitoring_report.json")
PLOT = "monitor.png"
HISTORY_RUNS = 168  # a week of hourly runs


@dataclasses.dataclass
class Clients:
    """AWS clients (tests pass moto's or a Stubber's); None: boto3's defaults when needed."""

    s3: Any = None
    cloudwatch: Any = None


def run(settings: MonitorSettings, clients: Clients | None = None) -> dict[str, Any]:
    clients = clients or Clients()
    started = time.perf_counter()
    base = baseline_files.load(
        settings.baseline_statistics, settings.baseline_constraints, clients.s3
    )
    window = Window(
        base.names,
        start=_iso(settings.start_time),
        end=_iso(settings.end_time),
        keep_keys=settings.label_source is not None,
    )
    files = 0
    for _, content in capture_files(
        settings.dataset_source,
        settings.endpoint_name,
        settings.start_time,
        settings.end_time,
        clients.s3,
    ):
        window.add_file(content)
        files += 1
    x = window.matrix()
    read_s = time.perf_counter() - started

    hours = (settings.end_time - settings.start_time).total_seconds() / 3600
    result = drift.drift(base, x, hours, settings.drift_alpha)
    violations = drift.violations(base, window, x, result)
    days: dict[str, dict[str, float]] = {}
    validation = quality.validation_figures(settings.validation_metrics, clients.s3)
    if settings.label_source:
        labels = quality.read_labels(settings.label_source, clients.s3)
        days = quality.daily(window, labels, settings.end_time, settings.label_delay_days)
        violations += quality.violations(days, validation, settings.quality_margin)
    per_hour = quality.hourly(window)
    drift_by_hour = _drift_by_hour(base, window, x, settings.drift_alpha)

    past_drift, past_days, past_runs = _history(settings, clients)
    out = settings.output_path
    out.mkdir(parents=True, exist_ok=True)
    elapsed_s = time.perf_counter() - started
    report = {
        "start_time": _iso(settings.start_time),
        "end_time": _iso(settings.end_time),
        "files": files,
        "records": window.records,
        "records_outside_window": window.outside,
        "rows": len(x),
        "unreadable_records": window.unreadable,
        "first_unreadable": window.first_unreadable,
        "drift": {
            "distance": result.distance,
            "not_compared": result.skipped,
            "threshold": base.comparison_threshold,
        },
        "violations": len(violations),
        "hourly": per_hour,
        "drift_by_hour": drift_by_hour,
        "quality_by_day": days,
        "validation": validation,
        "history_runs": past_runs,
        "seconds": {"read": round(read_s, 3), "total": round(elapsed_s, 3)},
        "records_per_s": round(window.records / read_s) if read_s > 0 else None,
        "rows_per_s": round(len(x) / read_s) if read_s > 0 else None,
    }
    _write(out / REPORTS[0], drift.statistics(base, window, x))
    _write(out / REPORTS[1], {"violations": violations})
    _write(out / REPORTS[2], report)
    plot.write(
        out / PLOT,
        past_drift | drift_by_hour,
        base.comparison_threshold,
        past_days | days,
        validation,
    )
    _publish(settings, base.emit_metrics, report, x, base.names, clients)
    return report


def _history(
    settings: MonitorSettings, clients: Clients
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], int]:
    """Drift per hour and quality per day from earlier runs' reports (for the plot), and
    how many reports were read."""
    drift_by_hour: dict[str, dict[str, float]] = {}
    days: dict[str, dict[str, float]] = {}
    runs = 0
    if settings.report_history is None:
        return drift_by_hour, days, runs
    for content in recent_reports(settings.report_history, REPORTS[2], HISTORY_RUNS, clients.s3):
        try:
            earlier = json.loads(content)
            drift_by_hour |= earlier["drift_by_hour"]
            days |= earlier["quality_by_day"]
        except (ValueError, KeyError, TypeError):
            continue  # a report of another version or a partial upload: not worth a failure
        runs += 1
    return drift_by_hour, days, runs


def _drift_by_hour(
    base: baseline_files.Baseline, window: Window, x: np.ndarray, alpha: float
) -> dict[str, dict[str, float]]:
    hours = window.hours
    out = {}
    for hour in sorted(set(hours.tolist())):
        result = drift.drift(base, x[hours == hour], 1.0, alpha)
        if result.distance:
            out[hour] = result.distance
    return out


def _publish(
    settings: MonitorSettings,
    emit: bool,
    report: dict[str, Any],
    x: np.ndarray,
    names: list[str],
    clients: Clients,
) -> None:
    if not (settings.publish_cloudwatch_metrics and emit):
        return
    dims = cloudwatch.dimensions(settings.endpoint_name, settings.schedule_name)
    threshold = report["drift"]["threshold"]
    drifted = sum(d > threshold for d in report["drift"]["distance"].values())
    at = settings.end_time
    metrics = [
        cloudwatch.metric("records", report["rows"], at, dims, "Count"),
        cloudwatch.metric("unreadable_records", report["unreadable_records"], at, dims, "Count"),
        cloudwatch.metric("constraint_violations", report["violations"], at, dims, "Count"),
        cloudwatch.metric("baseline_drift_violations", drifted, at, dims, "Count"),
    ]
    for feature, distance in report["drift"]["distance"].items():
        metrics.append(cloudwatch.metric(f"feature_baseline_drift_{feature}", distance, at, dims))
    if len(x):
        for j, name in enumerate(names):
            non_null = float(np.isfinite(x[:, j]).mean())
            metrics.append(cloudwatch.metric(f"feature_non_null_{name}", non_null, at, dims))
    hourly = report["hourly"]
    decided = sum(h["decided"] for h in hourly.values())
    if decided:
        for rate in ("decline_rate", "review_rate"):
            value = sum(h.get(rate, 0.0) * h["decided"] for h in hourly.values()) / decided
            metrics.append(cloudwatch.metric(rate, value, at, dims))
        p99 = [h["score_p99"] for h in hourly.values() if "score_p99" in h]
        if p99:
            metrics.append(cloudwatch.metric("score_p99", max(p99), at, dims))
    for day, figures in report["quality_by_day"].items():
        for name in quality.METRICS:
            if name in figures:
                day_end = dt.datetime.fromisoformat(f"{day}T23:59:59+00:00")
                metrics.append(
                    cloudwatch.metric(f"model_quality_{name}", figures[name], day_end, dims)
                )
    cloudwatch.write_files(metrics, settings.metrics_dir)
    if not settings.under_model_monitor:
        cloudwatch.put(metrics, settings.metrics_namespace, clients.cloudwatch)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _iso(moment: dt.datetime) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
