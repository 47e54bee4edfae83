"""Platt calibration: map logits to probabilities with a logistic fit on validation rows.

The fit runs on the validation run's scores of the validation week (the week before the
delay that precedes the test week), never on training or test rows. The two numbers fold
into the network's ``calib_slope`` and ``calib_intercept`` buffers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclasses.dataclass(frozen=True)
class Calibration:
    slope: float
    intercept: float

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * logits + self.intercept)))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    if len(np.unique(labels)) < 2:
        raise ValueError("calibration needs both classes in the validation rows")
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(logits.reshape(-1, 1).astype(np.float64), labels)
    return Calibration(slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Expected calibration error over quantile bins and the Brier score."""
    order = np.argsort(probs)
    bins = np.array_split(order, n_bins)
    ece = sum(len(b) * abs(probs[b].mean() - labels[b].mean()) for b in bins if len(b))
    return {
        "expected_calibration_error": float(ece / max(len(probs), 1)),
        "brier": float(np.mean((probs - labels) ** 2)),
    }
