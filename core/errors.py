"""Errors shared across stages.

    FraudError                 base of every error this project raises on purpose
    └── FeatureError           features cannot be computed from the given input
        └── OutOfOrderError    a transaction older than one already consumed

Each error carries ``http_status``: the status a server answers when it reaches a caller.
"""

from __future__ import annotations


class FraudError(Exception):
    http_status = 500


class FeatureError(FraudError, ValueError):
    http_status = 400


class OutOfOrderError(FeatureError):
    http_status = 409
