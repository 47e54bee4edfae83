"""``train`` under SageMaker Automatic Model Tuning: the keys the tuner and the SDK add to
hyperparameters.json are accepted, and the metric lines match the MetricDefinitions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from model.errors import HyperparameterError
from model.hyperparameters import Hyperparameters
from model.sagemaker_train import METRIC_DEFINITIONS, split_platform_keys
from tests.conftest import FAST_HYPERPARAMETERS

TUNER_KEYS = {
    "_tuning_objective_metric": "validation:average_precision",
    "sagemaker_program": "train",
    "sagemaker_region": "eu-west-1",
    "sagemaker_estimator_class_name": "Estimator",
}


def test_platform_keys_are_set_aside_and_other_unknown_keys_still_refused() -> None:
    model_keys, platform = split_platform_keys({**TUNER_KEYS, "dropout": "0.1"})
    assert platform == TUNER_KEYS and model_keys == {"dropout": "0.1"}
    with pytest.raises(HyperparameterError, match="unknown hyperparameters"):
        Hyperparameters.from_strings(split_platform_keys({"tuning_objective": "x"})[0])


def test_train_runs_with_the_tuners_keys_and_prints_metric_lines(
    small_parquet: Path, tmp_path: Path
) -> None:
    (tmp_path / "input" / "config").mkdir(parents=True)
    hyperparameters = {**FAST_HYPERPARAMETERS, **TUNER_KEYS}
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel = tmp_path / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (channel / "transactions.parquet").write_bytes(small_parquet.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "model.sagemaker_train"],
        env={**os.environ, "FRAUD_SAGEMAKER_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "platform hyperparameter _tuning_objective_metric=validation:average_precision" in (
        result.stdout
    )
    metrics = json.loads((tmp_path / "output" / "data" / "metrics.json").read_text())
    for definition in METRIC_DEFINITIONS:
        found = re.findall(definition["Regex"], result.stdout)
        name = definition["Name"].split(":")[1]
        assert len(found) == 1 and float(found[0]) == pytest.approx(metrics[name], abs=1e-6)
