"""Loader for the public ULB ``creditcard.csv`` (Kaggle) schema: Time, V1..V28, Amount, Class.

Those 30 inputs are PCA components of undisclosed card data, so they cannot feed our
15-feature model; the loader gives a checked (features, labels) pair for users who bring
the file and want to train or compare on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import UlbFormatError

ULB_FEATURES = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
ULB_LABEL = "Class"


def read_ulb(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (features in schema order, labels as int8) and check every column and value."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UlbFormatError(f"cannot read {path}: {exc}") from exc
    expected = (*ULB_FEATURES, ULB_LABEL)
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing or extra:
        raise UlbFormatError(
            f"{path}: missing columns {missing}, unexpected columns {extra}; "
            f"expected Time, V1..V28, Amount, Class"
        )
    features = df[list(ULB_FEATURES)]
    non_numeric = [c for c in ULB_FEATURES if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise UlbFormatError(f"{path}: non-numeric values in columns {non_numeric}")
    labels = df[ULB_LABEL]
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UlbFormatError(
            f"{path}: Class must be 0 or 1; data row {row + 1} has {labels.iloc[row]!r}"
        )
    return features.astype(np.float64), labels.to_numpy().astype(np.int8)
