"""The names and order of the 15 model features: what the server, the package manifest and
the ONNX input agree on. Kept apart from ``core.features`` (which computes them with pandas)
so the server imports no training stack."""

from __future__ import annotations

CUSTOMER_WINDOWS_DAYS = (1, 7, 30)
TERMINAL_WINDOWS_DAYS = (1, 7, 30)

FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "is_weekend",
    "is_night",
    *(
        name
        for n in CUSTOMER_WINDOWS_DAYS
        for name in (f"customer_count_{n}d", f"customer_mean_amount_{n}d")
    ),
    *(
        name
        for n in TERMINAL_WINDOWS_DAYS
        for name in (f"terminal_count_{n}d", f"terminal_risk_{n}d")
    ),
)
N_FEATURES = len(FEATURE_NAMES)
