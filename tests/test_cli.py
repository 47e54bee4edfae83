"""The ``fraud`` command as a user runs it: data -> train -> evaluate in one artefacts dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAST = [
    "--set",
    "hidden=32,16",
    "--set",
    "n_members=2",
    "--set",
    "max_epochs=3",
    "--set",
    "batch_size=256",
]


def fraud(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``fraud`` in ``cwd`` (so ./artifacts lands there), as the console script does."""
    env = {k: v for k, v in os.environ.items() if k != "FRAUD_ARTIFACTS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def test_data_train_evaluate_run_in_sequence_on_the_default_artifacts(workdir: Path) -> None:
    data = fraud(
        "data",
        "--customers",
        "300",
        "--terminals",
        "600",
        "--days",
        "75",
        "--start-date",
        "2018-06-01",
        "--seed",
        "3",
        cwd=workdir,
    )
    assert data.returncode == 0, data.stderr
    report = json.loads(data.stdout.strip().splitlines()[-1])
    assert {"n_transactions", "n_frauds", "fraud_rate", "frauds_by_scenario"} <= report.keys()
    assert (workdir / "artifacts" / "data" / "transactions.parquet").exists()

    train = fraud("train", "--quiet", *FAST, cwd=workdir)
    assert train.returncode == 0, train.stderr
    assert (workdir / "artifacts" / "model" / "model.json").exists()

    evaluate = fraud("evaluate", "--json", "--quiet", "--folds", "2", "--seeds", "2", cwd=workdir)
    assert evaluate.returncode == 0, evaluate.stderr
    result = json.loads(evaluate.stdout)
    for name in ("fraudnet", "xgboost"):
        metrics = result["models"][name]
        assert set(metrics) == {"auc_roc", "average_precision", "card_precision_at_100"}
        assert 0.5 < metrics["auc_roc"] <= 1.0
        assert result["prequential"]["models"][name]["average_precision_std"] >= 0.0
    assert len(result["prequential"]["folds"]) == 2
    assert (workdir / "artifacts" / "evaluation" / "precision_recall.png").stat().st_size > 1000

    table = fraud("evaluate", "--quiet", "--folds", "0", cwd=workdir)
    assert table.returncode == 0, table.stderr
    assert "fraudnet" in table.stdout and "AUC-ROC" in table.stdout


def test_a_missing_data_file_gives_one_clear_line(tmp_path: Path) -> None:
    result = fraud("train", "--data", "nowhere.parquet", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere.parquet does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_override_is_named(tmp_path: Path) -> None:
    result = fraud("train", "--set", "dropout", cwd=tmp_path)
    assert result.returncode == 1
    assert "--set expects key=value, got 'dropout'" in result.stderr


def test_evaluate_without_a_model_names_the_directory(tmp_path: Path) -> None:
    data = fraud("data", "--customers", "50", "--terminals", "100", "--days", "10", cwd=tmp_path)
    assert data.returncode == 0, data.stderr
    result = fraud("evaluate", cwd=tmp_path)
    assert result.returncode == 1
    assert "model.json is missing" in result.stderr


def test_every_stage_is_a_subcommand(tmp_path: Path) -> None:
    result = fraud("monitor", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--capture" in result.stdout
