"""Checks on decoded feature rows: impossible values are refused, unusual ones only counted.

The rules follow the feature definitions in ``core.features`` and are chosen by name:
``amount`` and ``*_mean_amount_*`` are >= 0; ``*_count_*`` are whole numbers >= 0;
``is_weekend`` and ``is_night`` are 0 or 1; ``terminal_risk_*`` lie in [0, 1]. Every value,
whatever its name, must be finite. A value outside training's [min, max] is possible, only
unusual: ``out_of_range`` counts it and the row is still scored.

``check_possible`` and ``out_of_range`` are whole-array operations (the bounds are built once
per tuple of names; the first offending row is looked for only when the check fails).
:class:`Checker` runs both for one model on every request; for a few rows it walks the values
in plain Python instead, which is several times cheaper than a dozen numpy calls on 15 values
(each costs about a microsecond); tests hold the two paths to the same answers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.errors import BadRequest

FLOAT32_MAX = float(np.finfo(np.float32).max)
_BIG = FLOAT32_MAX  # bounds are finite, so inf fails them as NaN does


@dataclass(frozen=True)
class _Rules:
    low: npt.NDArray[np.float64]  # (n_features,) smallest possible value
    high: npt.NDArray[np.float64]  # (n_features,) largest possible value
    fraction_ok: npt.NDArray[np.bool_]  # (n_features,) False where only whole numbers exist
    expected: tuple[str, ...]  # per feature, the rule in words for error messages


def feature_rule(name: str) -> tuple[float, float, bool, str]:
    """(low, high, whole numbers only, wording) for one feature name."""
    if name in ("is_weekend", "is_night"):
        return 0.0, 1.0, True, "0 or 1"
    if "_count_" in name:
        return 0.0, _BIG, True, "a whole number >= 0"
    if name.startswith("terminal_risk_"):
        return 0.0, 1.0, False, "a value in [0, 1]"
    if name == "amount" or "_mean_amount_" in name:
        return 0.0, _BIG, False, "a value >= 0"
    return -_BIG, _BIG, False, "a finite number"


@functools.lru_cache(maxsize=16)
def _rules(names: tuple[str, ...]) -> _Rules:
    rules = [feature_rule(name) for name in names]
    return _Rules(
        low=np.array([r[0] for r in rules], dtype=np.float64),
        high=np.array([r[1] for r in rules], dtype=np.float64),
        fraction_ok=np.array([not r[2] for r in rules], dtype=bool),
        expected=tuple(r[3] for r in rules),
    )


def check_possible(x: npt.NDArray[Any], feature_names: Sequence[str]) -> None:
    """Raise BadRequest naming the first row and feature holding an impossible value.

    ``x``: (rows, n_features) in the order of ``feature_names``.
    """
    names = tuple(feature_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"x has shape {x.shape}, expected (rows, {len(names)})")
    rules = _rules(names)
    ok = (x >= rules.low) & (x <= rules.high)  # (rows, n_features); NaN fails both
    ok &= (np.floor(x) == x) | rules.fraction_ok
    if ok.all():
        return
    row, col = (int(i) for i in np.argwhere(~ok)[0])
    raise _refusal(x, row, col, names)


def _refusal(x: npt.NDArray[Any], row: int, col: int, names: tuple[str, ...]) -> BadRequest:
    value = x[row, col]  # the numpy scalar: float32 prints as it was sent ("0.1", not 0.100..)
    if not np.isfinite(value):
        return BadRequest(f"row {row} has a non-finite value (NaN/inf) in {names[col]!r}")
    expected = _rules(names).expected[col]
    return BadRequest(f"row {row} feature {names[col]!r} is {value}, expected {expected}")


def out_of_range(
    x: npt.NDArray[Any], mins: npt.NDArray[Any], maxs: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Values outside training's [min, max]: (per-row any (rows,), per-feature counts (n,)).

    ``mins`` and ``maxs``: (n_features,) from the training data. NaN counts as inside; it
    never gets this far (``check_possible`` refuses it).
    """
    if mins.shape != (x.shape[1],) or maxs.shape != (x.shape[1],):
        raise ValueError(
            f"mins {mins.shape} and maxs {maxs.shape} must both be ({x.shape[1]},) for x {x.shape}"
        )
    outside = (x < mins) | (x > maxs)  # (rows, n_features)
    per_row: npt.NDArray[np.bool_] = np.any(outside, axis=1)
    per_feature: npt.NDArray[np.int64] = np.sum(outside, axis=0, dtype=np.int64)
    return per_row, per_feature


class Checker:
    """Both checks for one model: ``check(x)`` raises BadRequest on an impossible value and
    returns (per-row "has an out-of-range value" flags, per-feature out-of-range counts)."""

    small_rows = 4  # up to this many rows, the plain-Python walk is the faster path

    def __init__(
        self, feature_names: Sequence[str], mins: npt.NDArray[Any], maxs: npt.NDArray[Any]
    ) -> None:
        self.names = tuple(feature_names)
        self.mins = np.asarray(mins, dtype=np.float32)
        self.maxs = np.asarray(maxs, dtype=np.float32)
        rules = _rules(self.names)
        self._columns = list(
            zip(
                rules.low.tolist(),
                rules.high.tolist(),
                rules.fraction_ok.tolist(),
                self.mins.tolist(),
                self.maxs.tolist(),
                strict=True,
            )
        )

    def check(self, x: npt.NDArray[Any]) -> tuple[list[bool], list[int]]:
        if len(x) > self.small_rows or x.ndim != 2 or x.shape[1] != len(self.names):
            check_possible(x, self.names)
            per_row, per_feature = out_of_range(x, self.mins, self.maxs)
            return per_row.tolist(), per_feature.tolist()
        flagged: list[bool] = []
        counts = [0] * len(self.names)
        for r, row in enumerate(x.tolist()):
            outside = False
            for c, (v, (low, high, fraction_ok, lo, hi)) in enumerate(
                zip(row, self._columns, strict=True)
            ):
                # the same tests as check_possible (NaN fails both bounds) and out_of_range
                if not (low <= v <= high and (fraction_ok or v.is_integer())):
                    raise _refusal(x, r, c, self.names)
                if v < lo or v > hi:
                    counts[c] += 1
                    outside = True
            flagged.append(outside)
        return flagged, counts
