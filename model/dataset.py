"""Transaction tables on disk and the time-window splits of the evaluation protocol.

Protocol (Le Borgne et al.'s handbook): train on ``train_days`` starting at ``train_start``,
skip ``delay_days`` (labels arrive late), test on the next ``test_days``; from each test day
drop the customers already known compromised at (test day - delay). Validation is the same
shape ``2 * 7`` days earlier; prequential folds step back 7 days each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from core.features import LABEL_COLUMN, REQUIRED_COLUMNS, compute_features
from model.errors import DataError
from model.feature_table import COLUMNS as FEATURE_COLUMNS
from model.feature_table import split

OPTIONAL_COLUMNS = ("fraud_scenario",)
DEFAULT_TRAIN_START = dt.date(2018, 7, 25)
VALIDATION_OFFSET_DAYS = 14
FOLD_STEP_DAYS = 7


def read_transactions(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV transaction table (or a directory holding one) and check it."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.parquet"), *path.glob("*.csv")])
        if not files:
            raise DataError(f"{path} holds no .parquet or .csv file")
        return pd.concat([read_transactions(f) for f in files], ignore_index=True)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    try:
        if path.suffix == ".csv":
            df = pd.read_csv(path, parse_dates=["tx_datetime"])
        else:
            df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow/pandas raise many types for a bad file
        raise DataError(f"cannot read {path}: {exc}") from exc
    check_schema(df, str(path))
    return df


def check_schema(df: pd.DataFrame, source: str) -> None:
    expected = (*REQUIRED_COLUMNS, LABEL_COLUMN)
    missing = [c for c in expected if c not in df.columns]
    optional = (*OPTIONAL_COLUMNS, *FEATURE_COLUMNS)
    extra = [c for c in df.columns if c not in expected and c not in optional]
    if missing or extra:
        raise DataError(
            f"{source}: missing columns {missing}, unexpected columns {extra}; "
            f"expected {list(expected)} (optional {list(OPTIONAL_COLUMNS)})"
        )


def with_features(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Sort by event time and compute the feature matrix: (frame, (rows, 15) float64).

    A feature table (``model.feature_table``) gives its features as written, and the frame
    without them."""
    df = df.sort_values(["tx_datetime", "transaction_id"], kind="stable").reset_index(drop=True)
    table = split(df)
    return table if table is not None else (df, compute_features(df))


@dataclasses.dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    test: np.ndarray  # row indices, known-compromised customers removed per day
    train_start: dt.date


def day_index(df: pd.DataFrame) -> np.ndarray:
    """Whole days since 1970-01-01 of every row (the unit windows are cut in)."""
    return (df["tx_datetime"].astype("datetime64[s]").astype("int64") // 86_400).to_numpy()


def window_rows(
    df: pd.DataFrame, start: dt.date, n_days: int, days: np.ndarray | None = None
) -> np.ndarray:
    """Row indices of the ``n_days`` from ``start``; DataError naming the window if empty."""
    days = day_index(df) if days is None else days
    first = (start - dt.date(1970, 1, 1)).days
    rows = np.flatnonzero((days >= first) & (days < first + n_days))
    if len(rows) == 0:
        raise DataError(
            f"the training window {start} + {n_days} days holds no transactions "
            f"(data covers {df['tx_datetime'].min()} to {df['tx_datetime'].max()})"
        )
    return rows


def make_split(
    df: pd.DataFrame,
    train_start: dt.date,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
) -> Split:
    days = day_index(df)
    start = (train_start - dt.date(1970, 1, 1)).days
    train = window_rows(df, train_start, train_days, days)
    fraud = df[LABEL_COLUMN].to_numpy() == 1
    customer = df["customer_id"].to_numpy()
    known = set(customer[train][fraud[train]].tolist())
    test_parts = []
    for i in range(test_days):
        # frauds of the delay period become known one day at a time (the handbook's rule)
        revealed = days == start + train_days + i - 1
        known |= set(customer[revealed & fraud].tolist())
        rows = np.flatnonzero(days == start + train_days + delay_days + i)
        test_parts.append(rows[~np.isin(customer[rows], list(known))])
    test = np.concatenate(test_parts)
    if len(test) == 0:
        raise DataError(f"the test window after {train_start} holds no transactions")
    return Split(train=train, test=test, train_start=train_start)


def validation_start(train_start: dt.date) -> dt.date:
    return train_start - dt.timedelta(days=VALIDATION_OFFSET_DAYS)


def fold_starts(train_start: dt.date, n_folds: int) -> list[dt.date]:
    return [train_start - dt.timedelta(days=FOLD_STEP_DAYS * k) for k in range(n_folds)]
