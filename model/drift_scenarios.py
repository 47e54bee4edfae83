"""Drift applied to simulated transactions from a date on: what a monitor must notice.

- ``amount_scale``: every amount multiplied (a currency change, inflation, a new merchant
  mix); labels keep the meaning they had when drawn.
- ``night_share``: that share of the transactions of each drifted day moves to a uniform
  time between 00:00 and 06:00 of the same day (the feature ``is_night`` rises to it).
- ``new_fraud_customers_per_day``: a fraud pattern the model never saw: each day that many
  customers have their card taken over and every transaction of theirs in the next 7 days
  is fraud, at their usual amounts and terminals (fraud scenario 4). Features barely move;
  quality falls once labels arrive.

The frame stays sorted by event time with ``transaction_id`` equal to the row position, as
``simulate`` returns it; the same seed gives the same frame.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its options: no pandas at startup
    import numpy as np
    import pandas as pd

SECONDS_PER_DAY = 86_400
NIGHT_END_S = 6 * 3600
TAKEOVER_DAYS = 7
NEW_SCENARIO = 4


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    start_date: dt.date
    amount_scale: float = 1.0
    night_share: float = 0.0
    new_fraud_customers_per_day: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.amount_scale <= 0:
            raise ValueError(f"amount_scale must be positive, got {self.amount_scale}")
        if not 0 <= self.night_share <= 1:
            raise ValueError(f"night_share must be within 0-1, got {self.night_share}")
        if self.new_fraud_customers_per_day < 0:
            raise ValueError("new_fraud_customers_per_day must be >= 0")


def apply_drift(df: pd.DataFrame, cfg: DriftConfig) -> pd.DataFrame:
    """A drifted copy of ``df``: rows from ``cfg.start_date`` on change, earlier rows stay."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(cfg.seed)
    out = df.copy()
    drifted = (out["tx_datetime"] >= pd.Timestamp(cfg.start_date)).to_numpy()
    if cfg.amount_scale != 1.0:
        amount = out["amount"].to_numpy().copy()
        amount[drifted] = np.round(amount[drifted] * cfg.amount_scale, 2)
        out["amount"] = amount
    if cfg.night_share > 0:
        moved = drifted & (rng.random(len(out)) < cfg.night_share)
        midnight = out["tx_datetime"].dt.floor("D")
        seconds = pd.to_timedelta(rng.integers(1, NIGHT_END_S, len(out)), unit="s")
        out["tx_datetime"] = out["tx_datetime"].where(~moved, midnight + seconds)
    if cfg.new_fraud_customers_per_day:
        _take_over_cards(out, cfg, rng)
    out = out.sort_values(["tx_datetime", "transaction_id"], kind="stable")
    out["transaction_id"] = np.arange(len(out), dtype=np.int64)
    return out.reset_index(drop=True)


def _take_over_cards(df: pd.DataFrame, cfg: DriftConfig, rng: np.random.Generator) -> None:
    import numpy as np
    import pandas as pd

    start = pd.Timestamp(cfg.start_date)
    day = ((df["tx_datetime"] - start).dt.days).to_numpy()
    customer = df["customer_id"].to_numpy()
    fraud = df["is_fraud"].to_numpy().copy()
    scenario = df["fraud_scenario"].to_numpy().copy()
    customers = np.unique(customer)
    for d in range(int(day.max()) + 1 if len(day) else 0):
        taken = rng.choice(customers, size=min(cfg.new_fraud_customers_per_day, len(customers)))
        hit = np.isin(customer, taken) & (day >= d) & (day < d + TAKEOVER_DAYS)
        fraud[hit], scenario[hit] = 1, NEW_SCENARIO
    df["is_fraud"] = fraud
    df["fraud_scenario"] = scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``fraud data`` options: drift from a date on (see the module docstring)."""
    parser.add_argument("--drift-from", type=dt.date.fromisoformat, help="drift start date")
    parser.add_argument("--drift-amount-scale", type=float, default=1.0)
    parser.add_argument("--drift-night-share", type=float, default=0.0)
    parser.add_argument("--drift-new-fraud-customers", type=int, default=0)


def from_arguments(args: argparse.Namespace, seed: int) -> DriftConfig | None:
    if args.drift_from is None:
        return None
    return DriftConfig(
        start_date=args.drift_from,
        amount_scale=args.drift_amount_scale,
        night_share=args.drift_night_share,
        new_fraud_customers_per_day=args.drift_new_fraud_customers,
        seed=seed,
    )
