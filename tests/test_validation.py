"""The two checks on decoded rows, and their plain-Python path for small requests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.features import FEATURE_NAMES
from serving.errors import BadRequest
from serving.validation import Checker, check_possible, out_of_range

N = len(FEATURE_NAMES)
MINS = np.zeros(N, dtype=np.float32)
MAXS = np.full(N, 100.0, dtype=np.float32)
MAXS[[FEATURE_NAMES.index("is_weekend"), FEATURE_NAMES.index("is_night")]] = 1.0

# values that hit every rule: negatives, fractions, NaN, inf, the training bounds, huge
VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, -0.0, -1.0, 100.0, 100.5, 3e38, np.nan, np.inf, -np.inf]),
    st.floats(-5, 200, width=32),
)


def _numpy_answer(x: np.ndarray) -> tuple[list[bool], list[int]] | str:
    try:
        check_possible(x, FEATURE_NAMES)
    except BadRequest as exc:
        return str(exc)
    per_row, per_feature = out_of_range(x, MINS, MAXS)
    return per_row.tolist(), per_feature.tolist()


def _checker_answer(checker: Checker, x: np.ndarray) -> tuple[list[bool], list[int]] | str:
    try:
        return checker.check(x)
    except BadRequest as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.just(N)), elements=VALUES))
def test_small_requests_get_the_same_answer_as_the_array_checks(x: np.ndarray) -> None:
    checker = Checker(FEATURE_NAMES, MINS, MAXS)
    assert len(x) <= checker.small_rows  # the plain-Python path
    assert _checker_answer(checker, x) == _numpy_answer(x)


def test_large_requests_use_the_array_checks() -> None:
    checker = Checker(FEATURE_NAMES, MINS, MAXS)
    x = np.ones((checker.small_rows + 1, N), dtype=np.float32)
    x[2, 0] = 150.0
    flagged, counts = checker.check(x)
    assert flagged == [False, False, True, False, False]
    assert counts[0] == 1 and sum(counts) == 1


def test_the_refusal_names_the_row_feature_and_rule() -> None:
    checker = Checker(FEATURE_NAMES, MINS, MAXS)
    x = np.ones((3, N), dtype=np.float32)
    x[2, FEATURE_NAMES.index("is_night")] = 0.5
    with pytest.raises(BadRequest, match=r"row 2 feature 'is_night' is 0.5, expected 0 or 1"):
        checker.check(x)
    x[1, 3] = np.nan
    with pytest.raises(BadRequest, match=r"row 1 has a non-finite value"):
        checker.check(x)
