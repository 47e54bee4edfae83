"""The ``monitor`` executable (Processing / Model Monitor container) and ``fraud monitor``.

In a container the settings come from the environment (the Processing job's
``Environment``, which Model Monitor fills in). ``fraud monitor`` builds the same
environment from flags: a package directory gives the baseline and validation figures.
Exit 0 with reports written (violations or not: they are findings, not failures); 1 when
the run could not produce its reports, with the reason in ``/opt/ml/output/message`` as
Processing expects (``monitor_message_path`` relocates it: the tests run outside /opt/ml;
read here, not in the settings, because a failure to build the settings must reach it too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from monitor.errors import MonitorError
from monitor.settings import MonitorSettings

FAILURE_LIMIT_CHARS = 1024


def run_from_env(env: Mapping[str, str], message_path: Path | None = None) -> int:
    from monitor.job import run

    try:
        report = run(MonitorSettings.from_env(env))
    except MonitorError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"monitor: error: {reason}", file=sys.stderr)
        if message_path is not None:
            message_path.parent.mkdir(parents=True, exist_ok=True)
            message_path.write_text(reason[:FAILURE_LIMIT_CHARS])
        return 1
    summary = {k: report[k] for k in ("records", "rows", "violations", "records_per_s")}
    summary["drifted"] = sorted(
        name for name, d in report["drift"]["distance"].items() if d > report["drift"]["threshold"]
    )
    print(json.dumps(summary))
    return 0


def main() -> int:
    """Console script: the container contract (environment only)."""
    env = dict(os.environ)
    return run_from_env(env, Path(env.get("monitor_message_path", "/opt/ml/output/message")))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("monitor", help="drift and quality of captured traffic vs the baseline")
    p.add_argument(
        "--capture",
        required=True,
        help="capture root (dir or s3://) holding {endpoint}/{variant}/yyyy/mm/dd/hh",
    )
    p.add_argument("--package", type=Path, required=True, help="model package (its baseline/)")
    p.add_argument("--end", required=True, help="window end, ISO 8601 (UTC)")
    p.add_argument("--start", help="window start (default: --hours before --end)")
    p.add_argument("--hours", type=int, default=1, help="window length when --start is absent")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--endpoint", help="endpoint name (default: every endpoint under --capture)")
    p.add_argument("--labels", help="labels file: transaction_id|inference_id, label, card")
    p.add_argument("--label-delay-days", type=int, default=7)
    p.add_argument("--metrics-dir", type=Path, help="also write CloudWatch metric files here")
    p.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace) -> int:
    env = {
        "dataset_format": '{"sagemakerCaptureJson": {}}',
        "dataset_source": args.capture,
        "end_time": args.end,
        "start_time": args.start or "",
        "window_hours": str(args.hours),
        "output_path": str(args.out),
        "baseline_statistics": str(args.package / "baseline" / "statistics.json"),
        "baseline_constraints": str(args.package / "baseline" / "constraints.json"),
        "validation_metrics": str(args.package / "manifest.json"),
        "sagemaker_endpoint_name": args.endpoint or "",
        "label_source": args.labels or "",
        "label_delay_days": str(args.label_delay_days),
    }
    if args.metrics_dir is not None:
        # files only: with a schedule name set, the run leaves publishing to Model Monitor
        env |= {
            "publish_cloudwatch_metrics": "Enabled",
            "metrics_dir": str(args.metrics_dir),
            "sagemaker_monitoring_schedule_name": "local",
        }
    return run_from_env(env)


if __name__ == "__main__":
    sys.exit(main())
