"""The XGBoost reference, trained on the same rows as our model with a committed tuned config.

``configs/xgboost.json`` holds the configuration chosen on the validation folds only (see
``fraud tune``). The handbook's trap: XGBoost 2+ defaults (hist trees, base_score estimated
from data) give much lower AP here; the tuned config fixes both explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb

CONFIG_PATH = Path(__file__).with_name("configs") / "xgboost.json"


def load_config(path: Path = CONFIG_PATH) -> dict[str, object]:
    return dict(json.loads(Path(path).read_text()))


def fit_xgboost(
    x: np.ndarray, y: np.ndarray, params: dict[str, object], seed: int = 0, n_jobs: int = 2
) -> xgb.XGBClassifier:
    clf = xgb.XGBClassifier(**params, random_state=seed, n_jobs=n_jobs)
    clf.fit(x, y)
    return clf


def score(clf: xgb.XGBClassifier, x: np.ndarray) -> np.ndarray:
    return np.asarray(clf.predict_proba(x)[:, 1], dtype=np.float64)
