"""``fraud tune``: rerun the hyperparameter searches on the validation folds only.

The folds are the validation protocol's (model/dataset.py): training windows starting 14 days
before ``train_start`` and stepping back 7 days each, each scored on its own week after the
delay. No fold's training window starts on or after ``train_start``, so the test week never
takes part. XGBoost: a seeded random search around the committed config. FraudNet: named
candidate overrides of the default hyperparameters, trained for ``max_epochs`` without early
stopping (the folds' test weeks are what is being measured).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from model import xgboost_baseline
from model.dataset import Split, day_index, fold_starts, make_split, validation_start, with_features
from model.hyperparameters import Hyperparameters
from model.metrics import score_report
from model.trainer import fit, predict_logits

XGB_SPACE: dict[str, list[Any]] = {
    "max_depth": [3, 4, 5, 6],
    "learning_rate": [0.05, 0.1, 0.2, 0.3],
    "n_estimators": [50, 100, 200],
    "min_child_weight": [1, 5, 10],
    "subsample": [0.6, 0.8, 1.0],
    "colsample_bytree": [0.7, 0.85, 1.0],
    "scale_pos_weight": [1, 3, 10],
}

# what the committed defaults were chosen against (see benchmarks/RESULTS.md)
NN_CANDIDATES: dict[str, dict[str, str]] = {
    "default": {},
    "relu_constant_lr": {"activation": "relu", "learning_rate": "0.003"},
    "wider": {"hidden": "256,128"},
    "five_members": {"n_members": "5"},
}


@dataclasses.dataclass
class Folds:
    x: np.ndarray  # (rows, 15) float32
    y: np.ndarray  # (rows,) int64
    days: np.ndarray
    cards: np.ndarray
    splits: list[Split]


def validation_folds(df: pd.DataFrame, hp: Hyperparameters, n_folds: int = 4) -> Folds:
    df, x = with_features(df)
    splits = [make_split(df, s) for s in fold_starts(validation_start(hp.train_start), n_folds)]
    assert all(s.train_start < hp.train_start for s in splits)
    return Folds(
        x.astype(np.float32),
        df["is_fraud"].to_numpy().astype(np.int64),
        day_index(df),
        df["customer_id"].to_numpy(),
        splits,
    )


def _mean_report(folds: Folds, score: Callable[[Split], np.ndarray]) -> dict[str, float]:
    runs = [
        score_report(folds.days[s.test], folds.cards[s.test], folds.y[s.test], score(s))
        for s in folds.splits
    ]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


def tune_xgboost(folds: Folds, trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """Random search (plus the committed config as trial 0), best mean AP first."""
    rng = np.random.default_rng(seed)
    base = xgboost_baseline.load_config()
    configs = [base] + [
        {**base, **{k: v[int(rng.integers(len(v)))] for k, v in XGB_SPACE.items()}}
        for _ in range(trials)
    ]
    results = []
    for params in configs:

        def score(s: Split, params: dict[str, Any] = params) -> np.ndarray:
            model = xgboost_baseline.fit_xgboost(folds.x[s.train], folds.y[s.train], params)
            return xgboost_baseline.score(model, folds.x[s.test])

        results.append({"params": params, **_mean_report(folds, score)})
    return sorted(results, key=lambda r: -r["average_precision"])


def tune_nn(
    folds: Folds,
    hp: Hyperparameters,
    candidates: dict[str, dict[str, str]],
    seeds: tuple[int, ...] = (0,),
) -> list[dict[str, Any]]:
    """Each candidate's mean over folds and seeds, best mean AP first."""
    results = []
    for name, overrides in candidates.items():
        merged = {**hp.to_json(), **overrides}
        reports = []
        for seed in seeds:
            trial = Hyperparameters.from_strings({**merged, "seed": str(seed)})

            def score(s: Split, trial: Hyperparameters = trial) -> np.ndarray:
                net = fit(
                    trial,
                    folds.x[s.train],
                    folds.y[s.train],
                    epochs=trial.max_epochs,
                    progress=False,
                ).model
                return predict_logits(net, folds.x[s.test])

            reports.append(_mean_report(folds, score))
        mean = {k: float(np.mean([r[k] for r in reports])) for k in reports[0]}
        results.append({"candidate": name, "overrides": overrides, **mean})
    return sorted(results, key=lambda r: -r["average_precision"])


def to_json(results: list[dict[str, Any]]) -> str:
    return json.dumps(results, indent=2, default=str)
