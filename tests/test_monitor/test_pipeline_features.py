"""The retraining pipeline's first step run as its Processing job would: the Features step's
own command on a local ``/opt/ml/processing`` tree holding a simulated history (two files
that overlap), then ``train``'s contract on the table it writes as the ``train`` channel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.main import run
from model.dataset import read_transactions, with_features
from model.errors import DataError
from model.feature_table import COLUMNS, FILE_NAME, attach
from model.sagemaker_train import run_training
from tests.conftest import FAST_HYPERPARAMETERS
from tests.test_monitor.test_monitoring_template import pipeline

PROCESSING = "/opt/ml/processing"


def _local(path: str, root: Path) -> str:
    return path.replace(PROCESSING, str(root), 1) if path.startswith(PROCESSING) else path


def test_features_step_writes_the_table_that_train_reads(
    small_transactions: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = {s["Name"]: s for s in pipeline()["Steps"]}["Features"]["Arguments"]
    root = tmp_path / "processing"
    (source,) = step["ProcessingInputs"]
    history = Path(_local(source["S3Input"]["LocalPath"], root))
    history.mkdir(parents=True)
    half = len(small_transactions) // 2
    small_transactions.iloc[: half + 100].to_parquet(history / "part-1.parquet", index=False)
    small_transactions.iloc[half:].to_csv(history / "part-2.csv", index=False)

    entrypoint = step["AppSpecification"]["ContainerEntrypoint"]
    assert entrypoint[0] == "fraud"
    assert run([_local(a, root) for a in entrypoint[1:]], tmp_path / "artifacts") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["transactions"] == len(small_transactions)
    assert summary["duplicates_dropped"] == 100

    (output,) = step["ProcessingOutputConfig"]["Outputs"]
    written = Path(_local(output["S3Output"]["LocalPath"], root)) / FILE_NAME
    table = read_transactions(written.parent)
    frame, x = with_features(table)
    expected_frame, expected_x = with_features(small_transactions)
    np.testing.assert_array_equal(x, expected_x)
    pd.testing.assert_frame_equal(frame, expected_frame, check_dtype=False)

    # the Train step's channel: the table as SageMaker copies it into /opt/ml/input/data/train
    ml = tmp_path / "ml"
    (ml / "input" / "config").mkdir(parents=True)
    (ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(FAST_HYPERPARAMETERS))
    channel = ml / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (channel / FILE_NAME).write_bytes(written.read_bytes())
    run_training(ml)
    assert (ml / "model").is_dir() and any((ml / "model").iterdir())
    metrics = json.loads((ml / "output" / "data" / "metrics.json").read_text())
    assert 0.0 <= metrics["average_precision"] <= 1.0


def test_a_table_missing_feature_columns_is_refused(small_transactions: pd.DataFrame) -> None:
    table = attach(small_transactions.head(200)).drop(columns=[COLUMNS[3]])
    with pytest.raises(DataError, match=f"without columns \\['{COLUMNS[3]}'\\]"):
        with_features(table)


def test_one_transaction_id_with_two_different_rows_is_refused(
    small_transactions: pd.DataFrame,
) -> None:
    rows = small_transactions.head(50)
    changed = rows.head(1).assign(amount=rows["amount"].iloc[0] + 1.0)
    with pytest.raises(DataError, match="1 transaction ids carry different rows"):
        attach(pd.concat([rows, changed], ignore_index=True))
