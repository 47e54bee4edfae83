"""The feature table: a transaction history with its 15 model features, the training input.

``fraud features build`` reads a history (one file, or a directory of .parquet/.csv files
such as a Processing job's input), drops rows exported twice (same transaction id, same
content; the same id with different content is refused), computes the features in event
order (``core.features``: the same definitions the online stores use) and writes
``features.parquet``: the transactions in event order plus one ``feature_<name>`` column per
model feature (``core.feature_names.FEATURE_NAMES``; ``amount`` is both a column and a
feature, hence the prefix). ``train`` and ``fraud evaluate`` read the table like a plain
history and take its features as written (``model.dataset.with_features``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.feature_names import FEATURE_NAMES
from model.errors import DataError

PREFIX = "feature_"
COLUMNS = tuple(PREFIX + name for name in FEATURE_NAMES)
FILE_NAME = "features.parquet"


def deduplicated(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without repeated rows; a transaction id with two different rows is an error."""
    df = df.drop_duplicates(ignore_index=True)
    repeated = df["transaction_id"][df["transaction_id"].duplicated()]
    if len(repeated):
        shown = ", ".join(map(str, repeated.head(5).tolist()))
        raise DataError(f"{len(repeated)} transaction ids carry different rows (e.g. {shown})")
    return df


def attach(df: pd.DataFrame) -> pd.DataFrame:
    """The frame in event order with its feature columns."""
    from model.dataset import with_features

    df, x = with_features(deduplicated(df))
    return df.assign(**{c: x[:, i] for i, c in enumerate(COLUMNS)})


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray] | None:
    """(transactions, features) of a feature table; ``None`` for a plain history."""
    present = [c for c in COLUMNS if c in df.columns]
    if not present:
        return None
    if len(present) != len(COLUMNS):
        missing = [c for c in COLUMNS if c not in df.columns]
        raise DataError(f"a feature table without columns {missing}: rebuild it")
    x = df[list(COLUMNS)].to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        raise DataError("the feature table holds non-finite features: rebuild it")
    return df.drop(columns=list(COLUMNS)), x


def build(history: Path, out_dir: Path) -> dict[str, object]:
    """Write ``out_dir/features.parquet`` from ``history``; a summary for the log."""
    from model.dataset import read_transactions

    raw = read_transactions(history)
    table = attach(raw)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
    return {
        "path": str(path),
        "transactions": len(table),
        "duplicates_dropped": len(raw) - len(table),
        "frauds": int(table["is_fraud"].sum()),
        "first": str(table["tx_datetime"].min()) if len(table) else None,
        "last": str(table["tx_datetime"].max()) if len(table) else None,
    }
