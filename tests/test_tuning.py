"""``fraud tune`` searches on validation folds only, never on the test week."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from model.hyperparameters import Hyperparameters
from model.tuning import tune_nn, tune_xgboost, validation_folds
from tests.conftest import FAST_HYPERPARAMETERS
from tests.test_cli import fraud


def test_folds_never_reach_the_test_week(small_transactions: pd.DataFrame) -> None:
    hp = Hyperparameters()
    folds = validation_folds(small_transactions, hp, n_folds=2)
    starts = [s.train_start for s in folds.splits]
    assert starts == [dt.date(2018, 7, 11), dt.date(2018, 7, 4)]
    last_scored_day = max(folds.days[s.test].max() for s in folds.splits)
    first_test_day = (hp.train_start + dt.timedelta(days=14) - dt.date(1970, 1, 1)).days
    assert last_scored_day < first_test_day - 7  # before the final training week, even


def test_searches_rank_candidates_by_validation_ap(small_transactions: pd.DataFrame) -> None:
    hp = Hyperparameters.from_strings(FAST_HYPERPARAMETERS)
    folds = validation_folds(small_transactions, hp, n_folds=2)
    xgb = tune_xgboost(folds, trials=2)
    assert len(xgb) == 3
    assert [r["average_precision"] for r in xgb] == sorted(
        (r["average_precision"] for r in xgb), reverse=True
    )
    nn = tune_nn(folds, hp, {"base": {}, "relu": {"activation": "relu"}})
    assert {r["candidate"] for r in nn} == {"base", "relu"}
    assert all(0.0 <= r["average_precision"] <= 1.0 for r in nn)


def test_tune_command_writes_the_best_xgboost_config(small_parquet: Path, tmp_path: Path) -> None:
    out = tmp_path / "xgboost.json"
    result = fraud(
        "tune",
        "xgboost",
        "--data",
        str(small_parquet),
        "--folds",
        "2",
        "--trials",
        "1",
        "--write",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)
    assert json.loads(out.read_text()) == ranked[0]["params"]
