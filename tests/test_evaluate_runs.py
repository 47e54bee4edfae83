"""Prequential runs split into shards (one per Processing instance, or process) and merged
give the numbers of one unsharded run; a model scored on another protocol week."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from model.evaluate import Shard, evaluate, run_shard


def test_merged_shards_give_the_unsharded_result(
    small_transactions: pd.DataFrame, small_trained: Path
) -> None:
    kwargs = {"n_folds": 2, "seeds": (0,), "progress": False}
    whole, _ = evaluate(small_transactions, small_trained, workers=1, **kwargs)  # type: ignore[arg-type]
    shards = [
        run_shard(small_transactions, small_trained, Shard(i, 2), workers=1, **kwargs)  # type: ignore[arg-type]
        for i in range(2)
    ]
    assert [len(s["runs"]) for s in shards] == [1, 1]
    runs = [r for s in shards for r in json.loads(json.dumps(s))["runs"]]  # through JSON files
    merged, _ = evaluate(small_transactions, small_trained, shard_runs=runs, **kwargs)  # type: ignore[arg-type]
    assert merged == whole


def test_runs_of_another_plan_are_refused(
    small_transactions: pd.DataFrame, small_trained: Path
) -> None:
    run = {"task": 0, "fold": "2001-01-01", "seed": 0, "fraudnet": {}, "xgboost": {}}
    with pytest.raises(ValueError, match="not task 0 of this evaluation's plan"):
        evaluate(
            small_transactions,
            small_trained,
            n_folds=2,
            seeds=(0,),
            progress=False,
            shard_runs=[run],
        )


def test_shard_auto_takes_this_hosts_place(tmp_path: Path) -> None:
    config = tmp_path / "resourceconfig.json"
    config.write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"]})
    )
    assert Shard.parse("auto", config) == Shard(1, 3)
    assert Shard.parse("2/4", config) == Shard(2, 4)
    with pytest.raises(ValueError):
        Shard.parse("4/4", config)


def test_train_start_moves_the_test_week_of_a_trained_model(
    small_transactions: pd.DataFrame, small_trained: Path
) -> None:
    own, _ = evaluate(small_transactions, small_trained, prequential=False, progress=False)
    moved, _ = evaluate(
        small_transactions,
        small_trained,
        prequential=False,
        progress=False,
        train_start=dt.date(2018, 7, 18),
    )
    assert own["protocol"]["train_start"] == "2018-07-25"  # type: ignore[index]
    assert moved["protocol"]["train_start"] == "2018-07-18"  # type: ignore[index]
    assert moved["models"] != own["models"]
