"""The monitor's settings (the container contract's environment) and record reading."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.feature_names import FEATURE_NAMES
from monitor.errors import ConfigError
from monitor.records import Window
from monitor.settings import MonitorSettings
from monitor.sources import hour_prefixes
from tests.test_monitor.conftest import T0, hourly_times, synthetic_features, write_capture

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "dataset_source": "/d",
    "output_path": "/o",
    "baseline_statistics": "/s",
    "baseline_constraints": "/c",
}


def test_scheduler_time_is_floored_to_the_hour_it_closes() -> None:
    settings = MonitorSettings.from_env({**BASE, "end_time": "2024-05-01T14:10:00Z"})
    assert settings.start_time == dt.datetime(2024, 5, 1, 13, tzinfo=dt.UTC)
    assert settings.end_time == dt.datetime(2024, 5, 1, 14, tzinfo=dt.UTC)
    assert hour_prefixes(settings.start_time, settings.end_time) == ["2024/05/01/13"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"end_time": "2024-05-01T14:00:00Z", "output_path": ""}, "output_path is required"),
        ({"end_time": "yesterday"}, "end_time='yesterday' is not an ISO 8601 time"),
        ({"end_time": "2024-05-01T14:00:00Z", "start_time": "2024-05-01T15:00:00Z"}, "not before"),
        (
            {"end_time": "2024-05-01T14:00:00Z", "dataset_format": '{"csv": {}}'},
            "only sagemakerCaptureJson",
        ),
        ({"end_time": "2024-05-01T14:00:00Z", "drift_alpha": "2"}, "between 0 and 1"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MonitorSettings.from_env({**BASE, **env})


def record(input_body: dict[str, str], output: dict[str, object] | None = None) -> bytes:
    capture: dict[str, object] = {"endpointInput": {"mode": "INPUT", **input_body}}
    if output is not None:
        capture["endpointOutput"] = {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": json.dumps(output),
            "encoding": "JSON",
        }
    return json.dumps(
        {
            "captureData": capture,
            "eventMetadata": {
                "eventId": "e1",
                "inferenceId": "inf-1",
                "inferenceTime": "2024-05-01T13:00:00Z",
            },
            "eventVersion": "0",
        }
    ).encode()


def test_npy_and_json_lines_inputs_are_read() -> None:
    x = synthetic_features(3, np.random.default_rng(0))
    buffer = io.BytesIO()
    np.save(buffer, x.astype(np.float32), allow_pickle=False)
    window = Window(FEATURE_NAMES)
    window.add_line(
        record(
            {
                "observedContentType": "application/x-npy",
                "encoding": "BASE64",
                "data": base64.b64encode(buffer.getvalue()).decode(),
            }
        )
    )
    lines = "\n".join(json.dumps(dict(zip(FEATURE_NAMES, row, strict=True))) for row in x.tolist())
    window.add_line(
        record({"observedContentType": "application/jsonlines", "encoding": "JSON", "data": lines})
    )
    assert window.unreadable == 0
    np.testing.assert_allclose(window.matrix(), np.vstack([x.astype(np.float32), x]), rtol=1e-6)
    assert window.keys == ["inf-1/0", "inf-1/1", "inf-1/2"] * 2


def test_transaction_form_reads_features_and_transaction_id_from_the_output() -> None:
    row = synthetic_features(1, np.random.default_rng(1))[0]
    prediction = {
        "score": 0.97,
        "decision": "decline",
        "transaction_id": "tx-9",
        "features": dict(zip(FEATURE_NAMES, row.tolist(), strict=True)),
    }
    window = Window(FEATURE_NAMES)
    window.add_line(
        record(
            {
                "observedContentType": "application/json",
                "encoding": "JSON",
                "data": json.dumps({"transaction_id": "tx-9", "amount": row[0]}),
            },
            {"predictions": [prediction]},
        )
    )
    assert window.unreadable == 0 and window.keys == ["tx-9"]
    np.testing.assert_array_equal(window.matrix()[0], row)
    assert window.decisions.tolist() == ["decline"] and window.scores.tolist() == [0.97]


def test_a_record_with_more_predictions_than_rows_is_unreadable() -> None:
    window = Window(FEATURE_NAMES)
    window.add_line(
        record(
            {"observedContentType": "text/csv", "encoding": "CSV", "data": ",".join(["1"] * 15)},
            {"predictions": [{"score": 0.1}, {"score": 0.2}]},
        )
    )
    assert window.unreadable == 1 and window.matrix().shape == (0, 15)
    assert "1 input rows but 2 predictions" in str(window.first_unreadable)


def test_fraud_monitor_runs_on_a_package_and_a_capture(package: Path, tmp_path: Path) -> None:
    x = synthetic_features(500, np.random.default_rng(2), amount_scale=2.0)
    write_capture(tmp_path / "cap", x, hourly_times(T0, len(x)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "monitor",
            "--capture",
            str(tmp_path / "cap"),
            "--package",
            str(package),
            "--end",
            "2024-05-01T14:00:00Z",
            "--out",
            str(tmp_path / "o"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drifted"] == ["amount"]
    assert (tmp_path / "o" / "monitor.png").exists()
