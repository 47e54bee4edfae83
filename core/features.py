"""The 15 model features of a whole transaction table: the offline path.

The definitions live in ``core.windows`` (read its docstring): this module replays a frame
through the same per-entity state the online stores keep, in event order (time, transaction
id), with every label known (the offline assumption: a label counts for every event at or
after its transaction's time plus the label delay). The online stores run the same code as
events and labels arrive, so the offline table and the served features cannot drift apart.
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
from core.windows import (
    CustomerWindows,
    TerminalWindows,
    feature_row,
    id_key,
)

# columns a transaction table must carry to compute features (labels for terminal risk)
REQUIRED_COLUMNS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "amount")
LABEL_COLUMN = "is_fraud"


def epoch_seconds(tx_datetime: pd.Series) -> np.ndarray:
    """Datetime column -> int64 seconds since the epoch (sub-second parts truncated)."""
    return (tx_datetime.astype("datetime64[s]").astype("int64")).to_numpy()


def to_cents(amount: np.ndarray) -> np.ndarray:
    """Amounts in currency units -> int64 cents (``core.windows.to_cents``, vectorised)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * 100).astype(np.int64)


def check_columns(df: pd.DataFrame, required: Sequence[str]) -> None:
    """Raise ``FeatureError`` naming every missing column."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise FeatureError(f"missing columns {missing}; expected at least {list(required)}")


def compute_features(df: pd.DataFrame) -> np.ndarray:
    """Features for every row of a labelled transaction table: (rows, 15) float64, in the
    frame's row order."""
    check_columns(df, (*REQUIRED_COLUMNS, LABEL_COLUMN))
    time_s = epoch_seconds(df["tx_datetime"])
    ids = df["transaction_id"].tolist()
    keys = [id_key(i) for i in ids]
    order = sorted(range(len(df)), key=lambda r: (int(time_s[r]), keys[r]))
    times, cents = time_s.tolist(), to_cents(df["amount"].to_numpy()).tolist()
    customers, terminals = df["customer_id"].tolist(), df["terminal_id"].tolist()
    frauds = df[LABEL_COLUMN].astype(bool).tolist()
    by_customer: dict[object, CustomerWindows] = {}
    by_terminal: dict[object, TerminalWindows] = {}
    rows: list[list[float]] = [[]] * len(df)
    for r in order:
        t, key, c = times[r], keys[r], cents[r]
        cust = by_customer.get(customers[r])
        if cust is None:
            cust = by_customer[customers[r]] = CustomerWindows()
        term = by_terminal.get(terminals[r])
        if term is None:
            term = by_terminal[terminals[r]] = TerminalWindows()
        term.add(t)
        if frauds[r]:
            term.label(t, True)
        rows[r] = feature_row(t, c, cust.add_and_read(t, key, c) + term.read(t))
    return np.array(rows, dtype=np.float64).reshape(len(df), N_FEATURES)
