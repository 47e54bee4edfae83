"""The accuracy guard every optimised variant must pass before it may serve.

On the validation week, against the fp32 graph: average precision within ``AP_TOLERANCE``
and at least ``MIN_DECISION_AGREEMENT`` of decisions identical at the package thresholds.
The max absolute score difference is reported beside them; a failing variant is rejected
with the reason recorded in the manifest.
"""

from __future__ import annotations

import numpy as np

from optimize.thresholds import decide

AP_TOLERANCE = 0.002
MIN_DECISION_AGREEMENT = 0.999


def judge(
    scores: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    thresholds: dict[str, object],
) -> dict[str, object]:
    from sklearn.metrics import average_precision_score  # build time only: the server skips it

    ap_ref = float(average_precision_score(labels, reference))
    ap = float(average_precision_score(labels, scores))
    agreement = float(np.mean(decide(scores, thresholds) == decide(reference, thresholds)))
    finite = bool(np.isfinite(scores).all())
    result: dict[str, object] = {
        "average_precision": ap,
        "ap_delta": ap - ap_ref,
        "decision_agreement": agreement,
        "max_abs_diff": float(np.max(np.abs(scores - reference))) if finite else float("inf"),
        "rows": len(scores),
    }
    problems = []
    if not finite:
        problems.append("non-finite scores")
    if abs(ap - ap_ref) > AP_TOLERANCE:
        problems.append(f"AP {ap:.4f} differs from fp32 {ap_ref:.4f} by more than {AP_TOLERANCE}")
    if agreement < MIN_DECISION_AGREEMENT:
        problems.append(f"{agreement:.4%} identical decisions, below {MIN_DECISION_AGREEMENT:.1%}")
    result["accepted"] = not problems
    result["reason"] = "; ".join(problems) if problems else "within the guard"
    return result
