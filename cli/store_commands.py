"""``fraud features load`` and ``fraud labels ingest``: fill a feature store from files;
``fraud features build``: the offline feature table (``model.feature_table``) that training
reads, e.g. as the retraining pipeline's first Processing step."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import FraudError
from serving.feature_store.base import FeatureStore
from serving.feature_store.history import HistoryRow, ingest_labels, load_history

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

DEADLINE_S = 30.0  # a whole batch per call, not one transaction: generous
MAX_SKEW_S = 300


class StoreCommandError(FraudError, ValueError):
    pass


def add_store_parsers(sub: Any, artifacts: Path) -> None:
    path = artifacts / "feature-store" / "embedded.pickle"
    commands = (
        (
            "features",
            "online feature store tools",
            "load",
            "warm a store from a transaction history",
            ("history", "transactions (.parquet/.csv), with is_fraud"),
            cmd_features_load,
        ),
        (
            "labels",
            "fraud labels",
            "ingest",
            "load labels (transaction_id, fraud) into a store",
            ("file", ".parquet, .csv or .jsonl with transaction_id, fraud"),
            cmd_labels_ingest,
        ),
    )
    groups = {}
    for group, group_help, name, name_help, (arg, arg_help), func in commands:
        p = sub.add_parser(group, help=group_help)
        groups[group] = p.add_subparsers(dest=f"{group}_command", required=True)
        q = groups[group].add_parser(name, help=name_help)
        q.add_argument(arg, type=Path, help=arg_help)
        q.add_argument("--store", default="embedded", help="embedded (default) or redis://...")
        q.add_argument("--store-path", type=Path, default=path, help="embedded store snapshot")
        q.set_defaults(func=func)
    q = groups["features"].add_parser("build", help="the feature table training reads")
    q.add_argument("history", type=Path, help="transactions: a file or a directory of them")
    q.add_argument("--out", type=Path, required=True, help="directory for features.parquet")
    q.set_defaults(func=cmd_features_build)


def cmd_features_build(args: argparse.Namespace) -> int:
    from model.feature_table import build

    print(json.dumps(build(args.history, args.out)))
    return 0


def cmd_features_load(args: argparse.Namespace) -> int:
    from core.features import epoch_seconds, to_cents
    from model.dataset import read_transactions

    df = read_transactions(args.history)
    times = epoch_seconds(df["tx_datetime"]).tolist()
    cents = to_cents(df["amount"].to_numpy()).tolist()
    rows = [
        HistoryRow(i, c, m, t, a, bool(f))
        for i, c, m, t, a, f in zip(
            df["transaction_id"].tolist(),
            df["customer_id"].tolist(),
            df["terminal_id"].tolist(),
            times,
            cents,
            df["is_fraud"].tolist(),
            strict=True,
        )
    ]
    n = _run(args, lambda store: load_history(store, rows))
    print(json.dumps({"transactions_loaded": n, "store": _where(args)}))
    return 0


def cmd_labels_ingest(args: argparse.Namespace) -> int:
    df = _read_labels(args.file)
    labels = list(
        zip(df["transaction_id"].tolist(), df["fraud"].astype(bool).tolist(), strict=True)
    )
    accepted, unknown = _run(args, lambda store: ingest_labels(store, labels))
    print(json.dumps({"labels_accepted": accepted, "unknown_transaction_ids": unknown}))
    return 0


def _read_labels(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise StoreCommandError(f"{path} does not exist")
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path)
    elif path.suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=True)
    else:
        raise StoreCommandError(f"{path}: expected .parquet, .csv or .jsonl")
    missing = [c for c in ("transaction_id", "fraud") if c not in df.columns]
    if missing:
        raise StoreCommandError(
            f"{path}: missing columns {missing}; expected transaction_id, fraud"
        )
    return df


def _run(args: argparse.Namespace, work: Callable[[FeatureStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = _open(args)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _open(args: argparse.Namespace) -> FeatureStore:
    if args.store == "embedded":
        from serving.feature_store.embedded import EmbeddedStore

        store = EmbeddedStore.open(MAX_SKEW_S, args.store_path)
        store.dirty = True  # written at close even when nothing changed
        return store
    if not args.store.startswith(("redis://", "rediss://", "unix://")):
        raise StoreCommandError(f"--store {args.store!r}: expected embedded or redis://...")
    from serving.feature_store.redis_store import RedisStore

    return RedisStore(args.store, MAX_SKEW_S, DEADLINE_S)


def _where(args: argparse.Namespace) -> str:
    return str(args.store_path) if args.store == "embedded" else "redis"
