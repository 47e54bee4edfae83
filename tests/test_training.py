"""Training: determinism, the model directory, exact resume after a kill, hyperparameters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model import model_dir
from model.errors import HyperparameterError, ModelDirError
from model.hyperparameters import Hyperparameters
from model.network import FraudNet
from model.train import train_model
from tests.conftest import FAST_HYPERPARAMETERS

# the small model every test module shares (tests/conftest.py); trained once per session
FAST = FAST_HYPERPARAMETERS


@pytest.fixture(scope="module")
def trained(small_trained: Path) -> Path:
    return small_trained


def test_model_directory_describes_the_model(trained: Path) -> None:
    description = json.loads((trained / "model.json").read_text())
    assert [f["name"] for f in description["features"]][:3] == ["amount", "is_weekend", "is_night"]
    assert len(description["features"]) == 15
    assert all(f["min"] <= f["max"] for f in description["features"])
    for key in ("calibration", "validation_metrics", "seed", "git_commit", "library_versions"):
        assert key in description
    assert description["library_versions"]["torch"].startswith("2.13.0")
    assert 1 <= description["epochs"] <= 4
    assert 0.0 <= description["validation_metrics"]["average_precision"] <= 1.0


def test_weights_load_into_the_network_definition_alone(trained: Path) -> None:
    description = json.loads((trained / "model.json").read_text())
    cfg = description["network"]
    cfg["ratio_pairs"] = [tuple(p) for p in cfg["ratio_pairs"]]
    net = FraudNet(**cfg)
    net.load_state_dict(torch.load(trained / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(64, 15) * 10
    scores = net(x)
    assert scores.shape == (64,)
    assert ((scores > 0) & (scores < 1)).all()
    # calibration is folded in: the buffers hold the fitted Platt parameters
    assert float(net.calib_slope) == pytest.approx(description["calibration"]["slope"])


def test_training_is_deterministic(
    small_transactions: pd.DataFrame, trained: Path, tmp_path: Path
) -> None:
    train_model(small_transactions, Hyperparameters.from_strings(FAST), tmp_path, progress=False)
    a = torch.load(trained / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_model_directory_without_weights_is_named(trained: Path, tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text((trained / "model.json").read_text())
    with pytest.raises(ModelDirError, match="holds no weights"):
        model_dir.load(tmp_path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"hiden": "32"}, r"unknown hyperparameters \['hiden'\]"),
        ({"max_epochs": "ten"}, "max_epochs='ten' is not a valid int"),
        ({"dropout": "1.5"}, "out of range: {'dropout': 1.5}"),
        ({"train_start": "25/07/2018"}, "train_start='25/07/2018' is not a valid date"),
        ({"learning_rate": "nan"}, "out of range"),
    ],
)
def test_bad_hyperparameters_are_named(raw: dict[str, str], message: str) -> None:
    with pytest.raises(HyperparameterError, match=message):
        Hyperparameters.from_strings(raw)


def test_hyperparameters_parse_sagemaker_strings() -> None:
    hp = Hyperparameters.from_strings({"hidden": "[64, 32]", "n_members": "5", "dropout": "0.1"})
    assert hp.hidden == (64, 32) and hp.n_members == 5 and hp.dropout == 0.1


# -- the SageMaker training contract, run as the real executable in a temp /opt/ml --------

# slow enough per epoch (small batches) that a kill lands mid-run, short enough in total
SLOW = {"hidden": "64,64", "n_members": "1", "max_epochs": "5", "batch_size": "16", "patience": "5"}


def _opt_ml(root: Path, data: Path | None, hyperparameters: dict[str, str]) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    if data is not None:
        channel = root / "input" / "data" / "train"
        channel.mkdir(parents=True)
        (channel / "transactions.parquet").write_bytes(data.read_bytes())
    return root


def _train(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "FRAUD_SAGEMAKER_ROOT": str(root)}
    log = (root / "train.log").open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "model.sagemaker_train"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        log.close()


def test_train_executable_writes_model_metrics_and_checkpoints(
    small_parquet: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_parquet, FAST)
    proc = _train(root)
    assert proc.wait(timeout=300) == 0, (root / "train.log").read_text()
    assert (root / "model" / "model.pt").exists() and (root / "model" / "model.json").exists()
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    assert {"auc_roc", "average_precision", "card_precision_at_100"} <= metrics.keys()
    assert list((root / "checkpoints").glob("validation-*.pt"))
    assert not (root / "output" / "failure").exists()


def test_killed_training_resumes_to_the_same_weights(small_parquet: Path, tmp_path: Path) -> None:
    reference = _opt_ml(tmp_path / "a", small_parquet, SLOW)
    assert _train(reference).wait(timeout=600) == 0

    root = _opt_ml(tmp_path / "b", small_parquet, SLOW)
    proc = _train(root)
    deadline = time.monotonic() + 300
    while not list((root / "checkpoints").glob("validation-*.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # like a reclaimed spot instance: no cleanup at all
    proc.wait()
    assert not (root / "model" / "model.json").exists(), "killed too late to test a resume"

    assert _train(root).wait(timeout=600) == 0
    a = torch.load(reference / "model" / "model.pt", weights_only=True)
    b = torch.load(root / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_writes_a_failure_reason_and_exits_non_zero(
    small_parquet: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_parquet, SLOW)
    proc = _train(root)
    while not list((root / "checkpoints").glob("validation-*.pt")):
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert "SIGTERM" in (root / "output" / "failure").read_text()


@pytest.mark.parametrize(
    ("hyperparameters", "with_data", "expected"),
    [
        ({"n_members": "many"}, True, "n_members='many' is not a valid int"),
        ({}, False, "channel 'train' is missing"),
        ({"train_start": "2019-01-01"}, True, "training window 2018-12-18"),
    ],
)
def test_train_executable_reports_bad_input_in_the_failure_file(
    small_parquet: Path,
    tmp_path: Path,
    hyperparameters: dict[str, str],
    with_data: bool,
    expected: str,
) -> None:
    root = _opt_ml(tmp_path, small_parquet if with_data else None, hyperparameters)
    proc = _train(root)
    assert proc.wait(timeout=120) == 1
    err = (root / "train.log").read_text()
    failure = (root / "output" / "failure").read_text()
    assert expected in failure and len(failure) <= 1024
    assert "Traceback" not in err


def test_a_table_with_extra_columns_fails_with_its_name(
    small_transactions: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "extra.parquet"
    small_transactions.assign(pan="4111111111111111").to_parquet(path)
    root = _opt_ml(tmp_path / "ml", path, {})
    proc = _train(root)
    assert proc.wait(timeout=120) == 1
    assert "unexpected columns ['pan']" in (root / "output" / "failure").read_text()


def test_scores_are_finite_for_inputs_outside_the_training_range(trained: Path) -> None:
    net, _ = model_dir.load(trained)
    x = np.full((3, 15), 1e6, dtype=np.float32)
    x[1] = 0
    with torch.no_grad():
        s = net(torch.from_numpy(x)).numpy()
    assert np.isfinite(s).all()
