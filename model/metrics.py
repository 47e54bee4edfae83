"""Fraud detection metrics: AUC-ROC, average precision and Card Precision@k.

CP@k (the handbook's): per test day, one row per card (max score, max label), the k
highest-scoring cards, precision among them; cards found compromised on an earlier day are
removed from later days; the mean over days.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def card_precision_at_k(
    day: np.ndarray, card: np.ndarray, label: np.ndarray, score: np.ndarray, k: int = 100
) -> float:
    found: set[int] = set()
    precisions = []
    for d in np.unique(day):
        rows = day == d
        cards, inverse = np.unique(card[rows], return_inverse=True)
        best_score = np.full(len(cards), -np.inf)
        np.maximum.at(best_score, inverse, score[rows])
        best_label = np.zeros(len(cards), dtype=np.int64)
        np.maximum.at(best_label, inverse, label[rows].astype(np.int64))
        fresh = ~np.isin(cards, list(found))
        cards, best_score, best_label = cards[fresh], best_score[fresh], best_label[fresh]
        # stable order on ties: higher score first, then card id
        top = np.lexsort((cards, -best_score))[:k]
        precisions.append(best_label[top].sum() / k)
        found |= set(cards[top][best_label[top] == 1].tolist())
    return float(np.mean(precisions)) if precisions else 0.0


def score_report(
    day: np.ndarray, card: np.ndarray, label: np.ndarray, score: np.ndarray
) -> dict[str, float]:
    if len(np.unique(label)) < 2:
        raise ValueError("the test rows hold a single class; AUC and AP are undefined")
    return {
        "auc_roc": float(roc_auc_score(label, score)),
        "average_precision": float(average_precision_score(label, score)),
        "card_precision_at_100": card_precision_at_k(day, card, label, score, 100),
    }
