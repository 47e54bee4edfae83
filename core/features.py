"""The 15 model features, defined once, computed offline and incrementally.

Definitions (``t`` is the transaction's event time in whole seconds, ``day`` = 86,400 s):

- ``amount``; ``is_weekend`` (weekday >= 5); ``is_night`` (hour <= 6), from the UTC time.
- per customer, for n in 1, 7, 30 days: the transactions with time in (t - n day, t] seen up
  to and including this one (event order = (time, transaction_id)): count and mean amount.
- per terminal, for n in 1, 7, 30 days, with a label delay d = 7 days: the transactions with
  time in (t - (n + d) day, t - d day]: count and risk = frauds / count (0 when empty).

Amounts are summed in integer cents so both paths produce bit-identical means. The offline
path (:func:`compute_features`) is vectorised over a whole frame; the online path
(:class:`FeatureUpdater` in ``core.online_features``) keeps per-entity windows and must give
the same values on the same stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.errors import FeatureError
from core.feature_names import (  # noqa: F401  (re-exported: the names live with the math)
    CUSTOMER_WINDOWS_DAYS,
    FEATURE_NAMES,
    N_FEATURES,
    TERMINAL_WINDOWS_DAYS,
)

SECONDS_PER_DAY = 86_400
LABEL_DELAY_DAYS = 7

# columns a transaction table must carry to compute features (labels for terminal risk)
REQUIRED_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
LABEL_COLUMN = "is_fraud"


def to_cents(amount: np.ndarray) -> np.ndarray:
    """Amounts in currency units -> int64 cents (the unit every window sum uses)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * 100).astype(np.int64)


def mean_amount(sum_cents: np.ndarray | int, count: np.ndarray | int) -> np.ndarray | float:
    """Mean amount in currency units; 0 for an empty window. Shared by both paths."""
    if isinstance(count, np.ndarray):
        out = np.zeros(count.shape, dtype=np.float64)
        nz = count > 0
        out[nz] = np.asarray(sum_cents)[nz] / (count[nz] * 100.0)
        return out
    return sum_cents / (count * 100.0) if count else 0.0


def risk(frauds: np.ndarray | int, count: np.ndarray | int) -> np.ndarray | float:
    """Share of fraudulent transactions; 0 for an empty window. Shared by both paths."""
    if isinstance(count, np.ndarray):
        out = np.zeros(count.shape, dtype=np.float64)
        nz = count > 0
        out[nz] = np.asarray(frauds)[nz] / count[nz]
        return out
    return frauds / count if count else 0.0


def calendar_flags(epoch_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_weekend, is_night) as 0/1 floats from event times in epoch seconds (UTC)."""
    days = np.floor_divide(epoch_s, SECONDS_PER_DAY)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    hour = np.floor_divide(epoch_s % SECONDS_PER_DAY, 3600)
    return (weekday >= 5).astype(np.float64), (hour <= 6).astype(np.float64)


def epoch_seconds(tx_datetime: pd.Series) -> np.ndarray:
    """Datetime column -> int64 seconds since the epoch (sub-second parts truncated)."""
    return (tx_datetime.astype("datetime64[s]").astype("int64")).to_numpy()


def _window_bounds(
    entity: np.ndarray, time_s: np.ndarray, order: np.ndarray, offset_s: int
) -> np.ndarray:
    """Per row (in ``order``): first sorted position of its entity with time > t - offset."""
    ent, tim = entity[order], time_s[order]
    group_start = np.searchsorted(ent, ent, side="left")
    # within an entity the rows are sorted by time; search each group by a composite key
    span = int(tim.max() - tim.min()) + offset_s + 1 if len(tim) else 1
    key = ent.astype(np.int64) * span + (tim - (tim.min() if len(tim) else 0))
    lo = np.searchsorted(key, key - offset_s, side="right")
    return np.maximum(lo, group_start)


def _customer_features(
    customer: np.ndarray, time_s: np.ndarray, tx_id: np.ndarray, cents: np.ndarray
) -> list[np.ndarray]:
    order = np.lexsort((tx_id, time_s, customer))
    pos = np.arange(len(order))
    csum = np.concatenate([[0], np.cumsum(cents[order])])
    out: list[np.ndarray] = []
    for n in CUSTOMER_WINDOWS_DAYS:
        lo = _window_bounds(customer, time_s, order, n * SECONDS_PER_DAY)
        count = pos - lo + 1
        total = csum[pos + 1] - csum[lo]
        for values in (count.astype(np.float64), mean_amount(total, count)):
            col = np.empty(len(order), dtype=np.float64)
            col[order] = values
            out.append(col)
    return out


def _terminal_features(
    terminal: np.ndarray, time_s: np.ndarray, fraud: np.ndarray
) -> list[np.ndarray]:
    order = np.lexsort((time_s, terminal))
    fsum = np.concatenate([[0], np.cumsum(fraud[order].astype(np.int64))])
    hi = _window_bounds(terminal, time_s, order, LABEL_DELAY_DAYS * SECONDS_PER_DAY)
    out: list[np.ndarray] = []
    for n in TERMINAL_WINDOWS_DAYS:
        lo = _window_bounds(terminal, time_s, order, (n + LABEL_DELAY_DAYS) * SECONDS_PER_DAY)
        count = hi - lo
        frauds = fsum[hi] - fsum[lo]
        for values in (count.astype(np.float64), risk(frauds, count)):
            col = np.empty(len(order), dtype=np.float64)
            col[order] = values
            out.append(col)
    return out


def check_columns(df: pd.DataFrame, required: Sequence[str]) -> None:
    """Raise ``ValueError`` naming every missing column."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FeatureError(f"missing columns {missing}; expected at least {list(required)}")


def compute_features(df: pd.DataFrame) -> np.ndarray:
    """Vectorised features for every row of a labelled transaction table: (rows, 15) float64."""
    check_columns(df, (*REQUIRED_COLUMNS, LABEL_COLUMN))
    time_s = epoch_seconds(df["tx_datetime"])
    cents = to_cents(df["amount"].to_numpy())
    weekend, night = calendar_flags(time_s)
    columns = [
        cents / 100.0,
        weekend,
        night,
        *_customer_features(
            df["customer_id"].to_numpy(), time_s, df["transaction_id"].to_numpy(), cents
        ),
        *_terminal_features(df["terminal_id"].to_numpy(), time_s, df[LABEL_COLUMN].to_numpy()),
    ]
    return np.column_stack(columns)
