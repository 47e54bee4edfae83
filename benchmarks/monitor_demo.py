"""``make monitor-demo``: a normal week and a drifted week served with capture on, then the
monitor on each.

1. The simulated history (``fraud data``'s file) as it is, and a copy drifted from
   ``--drift-from`` (model.drift_scenarios: amounts x1.5, 30 % of transactions at night, a
   card take-over fraud pattern the model never saw).
2. The same week (``--week``, after the model's test week) of each: features computed from
   its own history, sent to the real server (``serve`` with FRAUD_CAPTURE_DIR) in requests
   of ``--batch`` rows, each with an inference id, so the capture holds what SageMaker's
   would.
3. The monitor on each capture, over a window covering the replay (a whole week of
   inference time, so the calendar features are compared too), with the labels of the
   replayed transactions joined by inference id (labels "arrived": delay 0).

The replay takes minutes, so every record's inference time is today: quality is one "day"
holding the whole week. Prints one JSON summary per week and writes the reports under
``--out/{normal,drifted}``. Exit 1 unless the drifted week alarms on the moved features
and on quality while the normal week raises no violation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.servers import free_port, wait_healthy
from model.dataset import read_transactions, with_features
from model.drift_scenarios import DriftConfig, apply_drift
from monitor.job import run
from monitor.settings import MonitorSettings

ENDPOINT = "fraud-demo"
EXPECTED_DRIFT = {"amount", "is_night"}


def week_rows(df: pd.DataFrame, start: dt.date) -> tuple[np.ndarray, pd.DataFrame]:
    frame, x = with_features(df)
    begin = pd.Timestamp(start)
    rows = (
        (frame["tx_datetime"] >= begin) & (frame["tx_datetime"] < begin + pd.Timedelta(days=7))
    ).to_numpy()
    return x[rows], frame.loc[rows].reset_index(drop=True)


def serve_and_capture(
    package: Path, capture: Path, x: np.ndarray, phase: str, batch: int
) -> list[str]:
    """Send ``x`` in requests of ``batch`` rows; returns each row's join key."""
    port = free_port()
    env = {
        **os.environ,
        "FRAUD_MODEL_DIR": str(package),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "FRAUD_BIND_HOST": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING",
        "FRAUD_CAPTURE_DIR": str(capture),
        "FRAUD_CAPTURE_PERCENT": "100",
        "FRAUD_ENDPOINT_NAME": ENDPOINT,
    }
    keys: list[str] = []
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving.entrypoint"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy("ours", proc, port, Path(log.name), 180)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for k, start in enumerate(range(0, len(x), batch)):
                rows = x[start : start + batch]
                inference_id = f"{phase}-{k}"
                conn.request(
                    "POST",
                    "/invocations",
                    json.dumps({"instances": rows.tolist()}),
                    {
                        "Content-Type": "application/json",
                        "X-Amzn-SageMaker-Inference-Id": inference_id,
                    },
                )
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"/invocations {response.status}: {body[:300]!r}")
                keys += [
                    f"{inference_id}/{i}" if len(rows) > 1 else inference_id
                    for i in range(len(rows))
                ]
            conn.close()
        finally:
            proc.terminate()  # SIGTERM: the server flushes its capture before it exits
            proc.wait(timeout=60)
    return keys


def monitor(package: Path, capture: Path, labels: Path, out: Path) -> dict[str, Any]:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    end = dt.datetime.combine(tomorrow, dt.time(), tzinfo=dt.UTC)
    env = {
        "dataset_source": str(capture),
        "start_time": (end - dt.timedelta(days=8)).isoformat(),
        "end_time": end.isoformat(),
        "output_path": str(out),
        "baseline_statistics": str(package / "baseline" / "statistics.json"),
        "baseline_constraints": str(package / "baseline" / "constraints.json"),
        "validation_metrics": str(package / "manifest.json"),
        "sagemaker_endpoint_name": ENDPOINT,
        "label_source": str(labels),
        "label_delay_days": "0",
    }
    report = run(MonitorSettings.from_env(env))
    violations = json.loads((out / "constraint_violations.json").read_text())["violations"]
    return {
        "rows": report["rows"],
        "records_per_s": report["records_per_s"],
        "drifted_features": sorted(
            {v["feature_name"] for v in violations if v.get("feature_name")}
        ),
        "quality_violations": sorted({v["metric_name"] for v in violations if "metric_name" in v}),
        "quality": report["quality_by_day"],
        "validation": report["validation"],
        "reports": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--drift-from", type=dt.date.fromisoformat, default=dt.date(2018, 8, 1))
    parser.add_argument("--week", type=dt.date.fromisoformat, default=dt.date(2018, 8, 15))
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)

    history = read_transactions(args.data)
    drift = DriftConfig(
        args.drift_from, amount_scale=1.5, night_share=0.3, new_fraud_customers_per_day=30, seed=1
    )
    summaries = {}
    for phase, df in (("normal", history), ("drifted", apply_drift(history, drift))):
        x, frame = week_rows(df, args.week)
        work = args.out / phase
        capture = work / "capture"
        keys = serve_and_capture(args.package, capture, x, phase, args.batch)
        labels = work / "labels.csv"
        pd.DataFrame(
            {
                "inference_id": keys,
                "label": frame["is_fraud"].to_numpy(),
                "card": frame["customer_id"].to_numpy(),
            }
        ).to_csv(labels, index=False)
        summaries[phase] = monitor(args.package, capture, labels, work / "report")
        print(json.dumps({phase: summaries[phase]}))
    normal, drifted = summaries["normal"], summaries["drifted"]
    ok = (
        not normal["drifted_features"]
        and not normal["quality_violations"]
        and EXPECTED_DRIFT <= set(drifted["drifted_features"])
        and bool(drifted["quality_violations"])
    )
    print("monitor demo: " + ("as expected" if ok else "NOT as expected"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
