"""The monitor's settings: Model Monitor's container contract plus our own options.

Built once from an environment mapping (``from_env``) in ``main``; nothing else reads the
environment. Model Monitor's variables keep their names (lower case, as the platform sets
them): ``dataset_format``, ``dataset_source``, ``start_time``, ``end_time``, ``output_path``,
``baseline_statistics``, ``baseline_constraints``, ``publish_cloudwatch_metrics``,
``sagemaker_endpoint_name``, ``sagemaker_monitoring_schedule_name``. Ours, in the same style:

    window_hours         without start_time: the window is the window_hours (1) whole
                         hours before end_time (floored to the hour); the scheduler passes
                         only end_time, its scheduled time
    label_source         labels (CSV or Parquet, local or s3://): transaction_id or
                         inference_id, label, optional card
    label_delay_days     days whose labels are still arriving (7): younger days are skipped
    validation_metrics   manifest.json of the serving package (its validation figures)
    quality_margin       a day's metric below validation - margin is a violation (0.1)
    drift_alpha          false-alarm budget of one window's drift checks (0.05)
    report_history       where earlier runs' reports are (dir or s3:// prefix): the plot
                         shows their drift and quality beside this run's (last 168 runs)
    metrics_namespace    CloudWatch namespace (/aws/sagemaker/Endpoints/data-metrics)
    metrics_dir          metric files (/opt/ml/output/metrics/cloudwatch)

``dataset_source`` is a local directory holding ``{endpoint}/{variant}/yyyy/mm/dd/hh`` (what
Model Monitor downloads) or an ``s3://`` prefix of the same layout that the monitor lists
itself, hour by hour, so a scheduled run reads only its window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path

from monitor.errors import ConfigError

CAPTURE_FORMAT = "sagemakerCaptureJson"
DEFAULT_NAMESPACE = "/aws/sagemaker/Endpoints/data-metrics"
DEFAULT_METRICS_DIR = "/opt/ml/output/metrics/cloudwatch"


@dataclasses.dataclass(frozen=True)
class MonitorSettings:
    dataset_source: str
    output_path: Path
    start_time: dt.datetime
    end_time: dt.datetime
    baseline_statistics: str  # a path or an s3:// URI
    baseline_constraints: str
    publish_cloudwatch_metrics: bool = False
    endpoint_name: str | None = None
    schedule_name: str | None = None
    label_source: str | None = None
    label_delay_days: int = 7
    validation_metrics: str | None = None
    quality_margin: float = 0.1
    drift_alpha: float = 0.05
    report_history: str | None = None
    metrics_namespace: str = DEFAULT_NAMESPACE
    metrics_dir: Path = Path(DEFAULT_METRICS_DIR)

    @property
    def under_model_monitor(self) -> bool:
        """Model Monitor names the schedule and publishes the metric files itself; a plain
        Processing job (our scheduler) has no schedule name and calls PutMetricData."""
        return self.schedule_name is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MonitorSettings:
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"environment variable {name} is required")
            return value

        def optional(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        _check_format(env.get("dataset_format"))
        end = parse_time("end_time", required("end_time"))
        window_hours = int(_number("window_hours", env.get("window_hours", "1"), int, minimum=1))
        start_text = optional("start_time")
        if start_text:
            start = parse_time("start_time", start_text)
        else:
            # the scheduler fires a few minutes past the hour (capture files land late):
            # its run covers the whole hours before that
            end = end.replace(minute=0, second=0, microsecond=0)
            start = end - dt.timedelta(hours=window_hours)
        if start >= end:
            raise ConfigError(f"start_time {start:%Y-%m-%dT%H:%M:%SZ} is not before end_time")
        return cls(
            dataset_source=required("dataset_source"),
            output_path=Path(required("output_path")),
            start_time=start,
            end_time=end,
            baseline_statistics=required("baseline_statistics"),
            baseline_constraints=required("baseline_constraints"),
            publish_cloudwatch_metrics=env.get("publish_cloudwatch_metrics", "Disabled").strip()
            == "Enabled",
            endpoint_name=optional("sagemaker_endpoint_name"),
            schedule_name=optional("sagemaker_monitoring_schedule_name"),
            label_source=optional("label_source"),
            label_delay_days=int(
                _number("label_delay_days", env.get("label_delay_days", "7"), int, minimum=0)
            ),
            validation_metrics=optional("validation_metrics"),
            quality_margin=float(
                _number("quality_margin", env.get("quality_margin", "0.1"), float, minimum=0)
            ),
            drift_alpha=_alpha(env.get("drift_alpha", "0.05")),
            report_history=optional("report_history"),
            metrics_namespace=env.get("metrics_namespace", DEFAULT_NAMESPACE),
            metrics_dir=Path(env.get("metrics_dir", DEFAULT_METRICS_DIR)),
        )


def parse_time(name: str, text: str) -> dt.datetime:
    """ISO 8601 (``2019-12-01T16:20:00Z``; the contract's example also has ``T16: 20: 00Z``)."""
    cleaned = text.replace(" ", "").replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(cleaned)
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _check_format(text: str | None) -> None:
    if text is None or not text.strip():
        return  # the capture format is the only one we read
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        parsed = text.strip()
    if not (isinstance(parsed, dict) and CAPTURE_FORMAT in parsed) and parsed != CAPTURE_FORMAT:
        raise ConfigError(f"dataset_format={text!r}: only {CAPTURE_FORMAT} capture is read")


def _number(name: str, text: str, kind: type[int] | type[float], minimum: float) -> int | float:
    try:
        value = kind(text)
    except ValueError as exc:
        raise ConfigError(f"{name}={text!r} is not a {kind.__name__}") from exc
    if value < minimum:
        raise ConfigError(f"{name}={text!r} must be at least {minimum:g}")
    return value


def _alpha(text: str) -> float:
    value = float(_number("drift_alpha", text, float, minimum=0))
    if not 0 < value < 1:
        raise ConfigError(f"drift_alpha={text!r} must be between 0 and 1")
    return value
