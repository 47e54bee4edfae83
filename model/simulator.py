"""Card-transaction simulator (Le Borgne et al., Fraud Detection Handbook, chapter 3).

Our own vectorised implementation of the published generative facts: customer and terminal
profiles on a 100 x 100 square, Poisson transaction counts per customer-day, normal times of
day and amounts, terminals drawn among those within ``radius`` of the customer, and three
fraud scenarios (large amounts, compromised terminals, compromised customers).

Invariants: the output is a pure function of the config (same seed, same frame), sorted by
event time, with ``transaction_id`` equal to the row position.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from model.errors import DataError

SECONDS_PER_DAY = 86_400
LARGE_AMOUNT = 220.0
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMER_COMPROMISE_DAYS = 14

TRANSACTION_COLUMNS = (
    "transaction_id",
    "tx_datetime",
    "customer_id",
    "terminal_id",
    "amount",
    "is_fraud",
    "fraud_scenario",
)


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    n_customers: int = 5_000
    n_terminals: int = 10_000
    n_days: int = 183
    start_date: dt.date = dt.date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 0
    terminals_compromised_per_day: int = 2
    customers_compromised_per_day: int = 3

    def __post_init__(self) -> None:
        for name in ("n_customers", "n_terminals", "n_days"):
            if getattr(self, name) <= 0:
                raise DataError(f"{name} must be positive, got {getattr(self, name)}")
        if self.radius <= 0:
            raise DataError(f"radius must be positive, got {self.radius}")


def _available_terminals(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """CSR lists of terminals within ``radius`` of each customer: (offsets, flat ids)."""
    lists = cKDTree(terminal_xy).query_ball_point(customer_xy, r=radius)
    sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.fromiter(
        (t for x in lists for t in sorted(x)), dtype=np.int64, count=int(offsets[-1])
    )
    return offsets, flat


def _draw_transactions(
    cfg: SimulatorConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    customer_xy = rng.uniform(0, 100, size=(cfg.n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=cfg.n_customers)
    std_amount = mean_amount / 2
    mean_per_day = rng.uniform(0, 4, size=cfg.n_customers)
    terminal_xy = rng.uniform(0, 100, size=(cfg.n_terminals, 2))
    offsets, flat = _available_terminals(customer_xy, terminal_xy, cfg.radius)
    n_available = np.diff(offsets)

    # (customer, day) counts; one row per transaction after np.repeat
    counts = rng.poisson(np.repeat(mean_per_day, cfg.n_days)).astype(np.int64)
    cell = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    customer = cell // cfg.n_days
    day = cell % cfg.n_days

    seconds = np.trunc(rng.normal(SECONDS_PER_DAY / 2, 20_000, size=cell.size)).astype(np.int64)
    drawn = rng.normal(mean_amount[customer], std_amount[customer])
    redraw = rng.uniform(0, 2 * mean_amount[customer])
    amount_all = np.round(np.where(drawn < 0, redraw, drawn), 2)
    pick_all = rng.random(size=cell.size)

    # times outside (0, 86400) and customers with no terminal in reach produce no transaction
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY) & (n_available[customer] > 0)
    customer, day, seconds = customer[keep], day[keep], seconds[keep]
    amount, pick = amount_all[keep], pick_all[keep]
    slot = np.minimum((pick * n_available[customer]).astype(np.int64), n_available[customer] - 1)
    terminal = flat[offsets[customer] + slot]

    time_s = day * SECONDS_PER_DAY + seconds
    order = np.lexsort((terminal, customer, time_s))
    start = pd.Timestamp(cfg.start_date)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(order.size, dtype=np.int64),
            "tx_datetime": start + pd.to_timedelta(time_s[order], unit="s"),
            "customer_id": customer[order],
            "terminal_id": terminal[order],
            "amount": amount[order],
            "is_fraud": np.zeros(order.size, dtype=np.int8),
            "fraud_scenario": np.zeros(order.size, dtype=np.int8),
        }
    )
    return frame, customer_xy, terminal_xy


@dataclasses.dataclass
class Simulation:
    """The transactions plus the hidden truth behind them (profiles, compromise schedule)."""

    transactions: pd.DataFrame
    customer_xy: np.ndarray  # (n_customers, 2)
    terminal_xy: np.ndarray  # (n_terminals, 2)
    compromised_terminals: list[tuple[int, int]]  # (terminal, first day index)
    compromised_customers: list[tuple[int, int]]  # (customer, first day index)


def _add_frauds(
    df: pd.DataFrame, cfg: SimulatorConfig, rng: np.random.Generator
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Apply the three scenarios in the handbook's order; later ones overwrite the label.
    Returns the compromise schedule: (terminal, day) and (customer, day) pairs."""
    day = ((df["tx_datetime"] - pd.Timestamp(cfg.start_date)).dt.days).to_numpy()
    terminal = df["terminal_id"].to_numpy()
    customer = df["customer_id"].to_numpy()
    amount = df["amount"].to_numpy().copy()
    fraud = np.zeros(len(df), dtype=np.int8)
    scenario = np.zeros(len(df), dtype=np.int8)

    large = amount > LARGE_AMOUNT
    fraud[large], scenario[large] = 1, 1

    # scenario 2: per terminal, a difference array of active compromise windows over days
    active = np.zeros((cfg.n_terminals, cfg.n_days + TERMINAL_COMPROMISE_DAYS + 1), np.int32)
    k = min(cfg.terminals_compromised_per_day, cfg.n_terminals)
    terminal_schedule: list[tuple[int, int]] = []
    for d in range(cfg.n_days):
        hit = rng.choice(cfg.n_terminals, size=k, replace=False)
        terminal_schedule += [(int(t), d) for t in hit]
        active[hit, d] += 1
        active[hit, d + TERMINAL_COMPROMISE_DAYS] -= 1
    compromised = np.cumsum(active, axis=1)[terminal, day] > 0
    fraud[compromised], scenario[compromised] = 1, 2

    # scenario 3: a third of a compromised customer's next 14 days get 5x amounts; rows
    # sorted by (customer, day) so each customer-window is a contiguous slice
    by_customer = np.lexsort((day, customer))
    cust_sorted, day_sorted = customer[by_customer], day[by_customer]
    key = cust_sorted * (cfg.n_days + CUSTOMER_COMPROMISE_DAYS + 1) + day_sorted
    k = min(cfg.customers_compromised_per_day, cfg.n_customers)
    customer_schedule: list[tuple[int, int]] = []
    for d in range(cfg.n_days):
        for c in rng.choice(cfg.n_customers, size=k, replace=False):
            customer_schedule.append((int(c), d))
            base = c * (cfg.n_days + CUSTOMER_COMPROMISE_DAYS + 1)
            lo, hi = np.searchsorted(key, [base + d, base + d + CUSTOMER_COMPROMISE_DAYS])
            n_hit = (hi - lo) // 3
            if n_hit == 0:
                continue
            rows = by_customer[lo + rng.choice(hi - lo, size=n_hit, replace=False)]
            amount[rows] *= 5
            fraud[rows], scenario[rows] = 1, 3

    df["amount"] = np.round(amount, 2)
    df["is_fraud"] = fraud
    df["fraud_scenario"] = scenario
    return terminal_schedule, customer_schedule


def simulate_detailed(cfg: SimulatorConfig) -> Simulation:
    """Generate the transactions for ``cfg`` with the truth behind them (for tests)."""
    rng = np.random.default_rng(cfg.seed)
    df, customer_xy, terminal_xy = _draw_transactions(cfg, rng)
    terminals, customers = _add_frauds(df, cfg, rng)
    return Simulation(df, customer_xy, terminal_xy, terminals, customers)


def simulate(cfg: SimulatorConfig) -> pd.DataFrame:
    """Generate the transaction table for ``cfg`` (deterministic for a given seed)."""
    return simulate_detailed(cfg).transactions


def summarize(df: pd.DataFrame) -> dict[str, object]:
    """The one-line report ``fraud data`` prints."""
    n = len(df)
    n_frauds = int(df["is_fraud"].sum())
    by_scenario = df.loc[df["is_fraud"] == 1, "fraud_scenario"].value_counts()
    return {
        "n_transactions": n,
        "n_frauds": n_frauds,
        "fraud_rate": round(n_frauds / n, 6) if n else 0.0,
        "frauds_by_scenario": {str(s): int(by_scenario.get(s, 0)) for s in (1, 2, 3)},
    }
