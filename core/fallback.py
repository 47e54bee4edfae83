"""What decides when no score can be computed in time: a merchant's fallback policy.

Shared by the client payment systems use (``deploy.client``: no answer from the endpoint)
and the server (``serving.transactions``: the feature store did not answer). Fail-open
approves, sending amounts at or above ``review_above`` to review; fail-closed declines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from core.errors import FraudError


class PolicyError(FraudError, ValueError):
    http_status = 400


@dataclasses.dataclass(frozen=True)
class FallbackPolicy:
    mode: str = "open"  # "open": approve when no score; "closed": decline
    review_above: float | None = None  # fail-open: amounts at or above go to review
    # client only: a score from a region other than the home one (the first listed) was
    # computed without the home region's online feature state: "score" lets it stand,
    # "rule" lets the rule decide
    degraded: str = "score"

    def __post_init__(self) -> None:
        if self.mode not in ("open", "closed"):
            raise PolicyError(f"fallback mode {self.mode!r} is not 'open' or 'closed'")
        if self.degraded not in ("score", "rule"):
            raise PolicyError(f"degraded policy {self.degraded!r} is not 'score' or 'rule'")

    def decide(self, amount: float) -> str:
        if self.mode == "closed":
            return "decline"
        if self.review_above is not None and amount >= self.review_above:
            return "review"
        return "approve"


def parse_policies(doc: Mapping[str, object]) -> dict[str, FallbackPolicy]:
    """``{"default": {"mode": "open", "review_above": 500}, "<merchant>": {...}}`` ->
    policies by merchant; ``default`` applies to every merchant not named."""
    out: dict[str, FallbackPolicy] = {}
    for merchant, spec in doc.items():
        if not isinstance(spec, dict) or set(spec) - {"mode", "review_above"}:
            raise PolicyError(
                f"fallback policy for {merchant!r} must be an object with mode and review_above"
            )
        review = spec.get("review_above")
        if review is not None and (isinstance(review, bool) or not isinstance(review, int | float)):
            raise PolicyError(f"fallback policy for {merchant!r}: review_above must be a number")
        out[str(merchant)] = FallbackPolicy(str(spec.get("mode", "open")), review)
    return out
