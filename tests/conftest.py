"""Shared fixtures: small simulated datasets (a few hundred customers, a few weeks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from model.simulator import Simulation, SimulatorConfig, simulate_detailed

# 75 days from 2018-06-01 cover the default protocol: validation run from 2018-07-11,
# final training from 2018-07-25, test week 2018-08-08 .. 08-14, with 40 days of history
SMALL = SimulatorConfig(
    n_customers=300,
    n_terminals=600,
    n_days=75,
    start_date=dt.date(2018, 6, 1),
    seed=5,
    terminals_compromised_per_day=1,
    customers_compromised_per_day=1,
)


@pytest.fixture(scope="session")
def small_simulation() -> Simulation:
    return simulate_detailed(SMALL)


@pytest.fixture(scope="session")
def small_transactions(small_simulation: Simulation) -> pd.DataFrame:
    return small_simulation.transactions


@pytest.fixture(scope="session")
def small_parquet(
    small_transactions: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("data") / "transactions.parquet"
    small_transactions.to_parquet(path, index=False)
    return path


FAST_HYPERPARAMETERS = {"hidden": "32,16", "n_members": "2", "max_epochs": "3", "batch_size": "256"}


@pytest.fixture(scope="session")
def small_trained(
    small_transactions: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from model.hyperparameters import Hyperparameters
    from model.train import train_model

    out = tmp_path_factory.mktemp("trained") / "model"
    train_model(
        small_transactions, Hyperparameters.from_strings(FAST_HYPERPARAMETERS), out, progress=False
    )
    return out


@pytest.fixture(scope="session")
def small_package(small_trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from optimize.package import build_package

    out = tmp_path_factory.mktemp("pkg") / "package"
    build_package(small_trained, out, timing_budget_s=0.01)
    return out


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's AWS server on loopback, one for the session (tests use distinct names)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
