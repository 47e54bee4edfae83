"""The monitor's speed on single-record capture, the shape of an endpoint's hour at
1,000 req/s (3.6 M records of one row each): ``--records`` records written in the server's
capture format into one hour, then one monitor run over that hour. Prints records/s of the
read (listing, parsing, checks of each record) and of the whole run (statistics, drift,
reports, plot), and the projected minutes for 3.6 M records."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from core.feature_names import FEATURE_NAMES
from monitor.job import run
from monitor.settings import MonitorSettings
from optimize import monitor_baseline

HOUR = dt.datetime(2024, 5, 1, 13, tzinfo=dt.UTC)
HOUR_RECORDS = 3_600_000


def write_hour(root: Path, x: np.ndarray) -> None:
    directory = root / "fraud-ep" / "AllTraffic" / HOUR.strftime("%Y/%m/%d/%H")
    directory.mkdir(parents=True)
    with open(directory / "13-00-00-1-bench.jsonl", "wb") as f:
        for i, row in enumerate(x.tolist()):
            score = (i % 97) / 97
            record = {
                "captureData": {
                    "endpointInput": {
                        "observedContentType": "application/json",
                        "mode": "INPUT",
                        "data": orjson.dumps({"instances": [row]}).decode(),
                        "encoding": "JSON",
                    },
                    "endpointOutput": {
                        "observedContentType": "application/json",
                        "mode": "OUTPUT",
                        "data": orjson.dumps(
                            {
                                "predictions": [
                                    {"score": score, "decision": "approve", "out_of_range": False}
                                ],
                                "model_version": "m",
                                "thresholds_version": "t",
                            }
                        ).decode(),
                        "encoding": "JSON",
                    },
                },
                "eventMetadata": {
                    "eventId": f"e{i}",
                    "inferenceId": f"i{i}",
                    "inferenceTime": f"2024-05-01T13:{i // 60000 % 60:02d}:00Z",
                },
                "eventVersion": "0",
            }
            f.write(orjson.dumps(record) + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = np.round(rng.gamma(2.0, 10.0, (args.records, len(FEATURE_NAMES))), 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "baseline").mkdir()
        for name, build in (
            ("statistics", monitor_baseline.statistics),
            ("constraints", monitor_baseline.constraints),
        ):
            (root / "baseline" / f"{name}.json").write_text(
                json.dumps(build(x[:50_000], FEATURE_NAMES))
            )
        write_hour(root / "capture", x)
        size = sum(p.stat().st_size for p in (root / "capture").rglob("*.jsonl"))
        env = {
            "dataset_source": str(root / "capture"),
            "end_time": (HOUR + dt.timedelta(hours=1)).isoformat(),
            "output_path": str(root / "out"),
            "baseline_statistics": str(root / "baseline" / "statistics.json"),
            "baseline_constraints": str(root / "baseline" / "constraints.json"),
        }
        started = time.perf_counter()
        report = run(MonitorSettings.from_env(env))
        total_s = time.perf_counter() - started
    per_s = args.records / total_s
    print(
        json.dumps(
            {
                "records": args.records,
                "capture_bytes": size,
                "read_records_per_s": report["records_per_s"],
                "run_records_per_s": round(per_s),
                "run_s": round(total_s, 2),
                "projected_minutes_for_3_6M": round(HOUR_RECORDS / per_s / 60, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
