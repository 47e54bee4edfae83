from __future__ import annotations

import numpy as np
import pytest

from model.calibration import fit_platt, reliability
from model.metrics import card_precision_at_k, score_report


def test_card_precision_takes_each_cards_max_score_and_label() -> None:
    day = np.array([0, 0, 0, 0, 0])
    card = np.array([1, 1, 2, 3, 3])
    label = np.array([0, 1, 0, 0, 0])
    score = np.array([0.1, 0.2, 0.9, 0.5, 0.4])
    # cards ranked by max score: 2 (0.9, clean), 3 (0.5, clean), 1 (0.2, compromised)
    assert card_precision_at_k(day, card, label, score, k=2) == 0.0
    assert card_precision_at_k(day, card, label, score, k=3) == pytest.approx(1 / 3)


def test_card_precision_drops_cards_found_on_earlier_days() -> None:
    day = np.array([0, 0, 1, 1])
    card = np.array([7, 8, 7, 8])
    label = np.array([1, 0, 1, 1])
    score = np.array([0.9, 0.1, 0.9, 0.8])
    # day 0: top-1 is card 7, compromised (1.0); day 1: card 7 is already known, so card 8
    assert card_precision_at_k(day, card, label, score, k=1) == 1.0
    # without the removal day 1 would rank card 7 first again; check card 8 was scored
    score_b = np.array([0.9, 0.1, 0.9, 0.0])
    assert card_precision_at_k(day, card, label, score_b, k=1) == 1.0


def test_card_precision_divides_by_k_even_with_fewer_cards() -> None:
    day, card = np.array([0, 0]), np.array([1, 2])
    label, score = np.array([1, 1]), np.array([0.5, 0.6])
    assert card_precision_at_k(day, card, label, score, k=4) == 0.5


def test_score_report_on_a_perfect_ranking() -> None:
    label = np.array([0, 0, 1, 1])
    report = score_report(np.zeros(4), np.arange(4), label, np.array([0.1, 0.2, 0.8, 0.9]))
    assert report["auc_roc"] == 1.0
    assert report["average_precision"] == 1.0
    assert report["card_precision_at_100"] == 0.02


def test_score_report_refuses_a_single_class() -> None:
    with pytest.raises(ValueError, match="single class"):
        score_report(np.zeros(3), np.arange(3), np.zeros(3), np.ones(3))


def test_platt_calibration_recovers_a_known_mapping() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=200_000)
    labels = (rng.random(200_000) < 1 / (1 + np.exp(-(0.5 * logits - 3)))).astype(int)
    cal = fit_platt(logits, labels)
    assert cal.slope == pytest.approx(0.5, abs=0.03)
    assert cal.intercept == pytest.approx(-3.0, abs=0.06)
    assert reliability(cal.apply(logits), labels)["expected_calibration_error"] < 0.005
