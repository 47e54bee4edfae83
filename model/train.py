"""``fraud train``: the validation run, then the final model, written as a model directory.

1. Validation run (the handbook's protocol, model/dataset.py): train on the 7 days starting
   ``train_start - 14 days``, early-stop on AP over the validation week (``train_start`` ..
   +7 days, after the 7-day delay); fit Platt calibration on that week's scores.
2. Final run: train on the 7 days from ``train_start`` for the number of epochs the
   validation run kept; fold the calibration into the network.

The test week (``train_start + 14 days``) is never read here. Both runs checkpoint every epoch
under ``checkpoint_dir`` and resume from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.features import FEATURE_NAMES
from model import model_dir
from model.calibration import fit_platt, reliability
from model.dataset import (
    day_index,
    make_split,
    validation_start,
    window_rows,
    with_features,
)
from model.errors import DataError
from model.hyperparameters import Hyperparameters
from model.metrics import score_report
from model.trainer import fit, network_config, predict_logits


def _fingerprint(hp: Hyperparameters, x: np.ndarray, y: np.ndarray) -> str:
    """Identifies what a checkpoint belongs to, so a changed job never resumes a stale one."""
    h = hashlib.sha256(json.dumps(hp.to_json(), sort_keys=True).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()[:16]


def _checkpoint(checkpoint_dir: Path | None, phase: str, fingerprint: str) -> Path | None:
    if checkpoint_dir is None:
        return None
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return checkpoint_dir / f"{phase}-{fingerprint}.pt"


def feature_ranges(x: np.ndarray) -> list[dict[str, object]]:
    return [
        {"name": name, "dtype": "float32", "min": float(x[:, i].min()), "max": float(x[:, i].max())}
        for i, name in enumerate(FEATURE_NAMES)
    ]


def train_model(
    df: pd.DataFrame,
    hp: Hyperparameters,
    out_dir: Path,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, object]:
    """Train, calibrate and write the model directory; return its description."""
    torch.use_deterministic_algorithms(True)
    df, x_all = with_features(df)
    x_all = x_all.astype(np.float32)
    y_all = df["is_fraud"].to_numpy().astype(np.int64)

    val = make_split(df, validation_start(hp.train_start))
    xv, yv, xt, yt = x_all[val.train], y_all[val.train], x_all[val.test], y_all[val.test]
    if yv.sum() == 0 or yt.sum() == 0:
        raise DataError("the validation run needs frauds in both its training and validation week")
    ckpt = _checkpoint(checkpoint_dir, "validation", _fingerprint(hp, xv, yv))
    val_fit = fit(
        hp,
        xv,
        yv,
        epochs=hp.max_epochs,
        x_val=xt,
        y_val=yt,
        checkpoint=ckpt,
        label="validation run",
        progress=progress,
    )
    val_logits = predict_logits(val_fit.model, xt)
    calibration = fit_platt(val_logits, yt)
    days, cards = day_index(df), df["customer_id"].to_numpy()
    val_metrics = score_report(days[val.test], cards[val.test], yt, val_logits)
    val_metrics.update(reliability(calibration.apply(val_logits), yt))

    rows = window_rows(df, hp.train_start, 7)
    xf, yf = x_all[rows], y_all[rows]
    ckpt = _checkpoint(checkpoint_dir, "final", _fingerprint(hp, xf, yf))
    final = fit(
        hp,
        xf,
        yf,
        epochs=val_fit.best_epoch,
        checkpoint=ckpt,
        label="final model",
        progress=progress,
    )
    with torch.no_grad():
        final.model.calib_slope.fill_(calibration.slope)
        final.model.calib_intercept.fill_(calibration.intercept)

    description: dict[str, object] = {
        "format_version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "network": network_config(hp),
        "features": feature_ranges(xf),
        "output": {
            "name": "score",
            "meaning": "calibrated probability that the transaction "
            "is fraud (Platt scaling fitted on the validation week)",
        },
        "calibration": {
            "method": "platt",
            **dataclasses.asdict(calibration),
            "fitted_on": f"validation week from {hp.train_start}",
        },
        "hyperparameters": hp.to_json(),
        "epochs": val_fit.best_epoch,
        "windows": {
            "validation_train_start": val.train_start.isoformat(),
            "final_train_start": hp.train_start.isoformat(),
            "final_train_rows": len(rows),
            "final_train_frauds": int(yf.sum()),
        },
        "validation_metrics": val_metrics,
        "validation_history": val_fit.history,
        "seed": hp.seed,
        "git_commit": model_dir.git_commit(),
        "library_versions": model_dir.library_versions(),
    }
    # rows for the optimize stage: the validation week (guard, thresholds: the validation-run
    # model's calibrated scores are out of sample there) and the final training week (int8
    # calibration rows, the Model Monitor baseline)
    arrays = {
        "validation_x": xt,
        "validation_y": yt.astype(np.int8),
        "validation_scores": calibration.apply(val_logits).astype(np.float32),
        "training_x": xf,
    }
    model_dir.save(final.model, description, out_dir, arrays)
    return description
