"""``fraud features load`` and ``fraud labels ingest``: fill a feature store from files, local
or ``s3://bucket/key`` objects; ``fraud features build``: the offline feature table
(``model.feature_table``) that training reads, e.g. as the retraining pipeline's first
Processing step.

An ``s3://`` object is copied into a temporary directory under its own file name, then read
exactly as a local file (same suffix dispatch, same column checks). boto3 finds credentials,
region and endpoint the usual way (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, profiles);
its failures (no such bucket or key, access denied, no credentials) become one-line errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
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
            ("history", "transactions (.parquet/.csv, a path or s3://), with is_fraud"),
            cmd_features_load,
        ),
        (
            "labels",
            "fraud labels",
            "ingest",
            "load labels (transaction_id, fraud) into a store",
            ("file", ".parquet, .csv or .jsonl (a path or s3://) with transaction_id, fraud"),
            cmd_labels_ingest,
        ),
    )
    groups = {}
    for group, group_help, name, name_help, (arg, arg_help), func in commands:
        p = sub.add_parser(group, help=group_help)
        groups[group] = p.add_subparsers(dest=f"{group}_command", required=True)
        q = groups[group].add_parser(name, help=name_help)
        q.add_argument(arg, help=arg_help)
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

    with local_copy(args.history) as path:
        df = read_transactions(path)
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
    with local_copy(args.file) as path:
        df = _read_labels(path, args.file)
    labels = list(
        zip(df["transaction_id"].tolist(), df["fraud"].astype(bool).tolist(), strict=True)
    )
    accepted, unknown = _run(args, lambda store: ingest_labels(store, labels))
    print(json.dumps({"labels_accepted": accepted, "unknown_transaction_ids": unknown}))
    return 0


@contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """``source`` as a local path: itself, or an ``s3://`` object downloaded under its own
    name into a temporary directory removed afterwards."""
    if not source.startswith("s3://"):
        yield Path(source)
        return
    bucket, _, key = source.removeprefix("s3://").partition("/")
    name = key.rsplit("/", 1)[-1]
    if not bucket or not name:
        raise StoreCommandError(f"{source}: expected s3://bucket/key")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    with tempfile.TemporaryDirectory(prefix="fraud-s3-") as tmp:
        path = Path(tmp) / name
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
            with path.open("wb") as f:
                shutil.copyfileobj(body, f, 1 << 20)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StoreCommandError(
                f"cannot read {source}: {error.get('Code')}: {error.get('Message')}"
            ) from exc
        except BotoCoreError as exc:
            raise StoreCommandError(f"cannot read {source}: {exc}") from exc
        yield path


def _read_labels(path: Path, source: str) -> pd.DataFrame:
    import pandas as pd

    if not path.exists():
        raise StoreCommandError(f"{source} does not exist")
    readers = {
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": lambda p: pd.read_json(p, lines=True),
    }
    reader = readers.get(path.suffix)
    if reader is None:
        raise StoreCommandError(f"{source}: expected .parquet, .csv or .jsonl")
    try:
        df = reader(path)
    except Exception as exc:  # pyarrow/pandas raise many types for a bad file
        raise StoreCommandError(f"cannot read {source}: {exc}") from exc
    missing = [c for c in ("transaction_id", "fraud") if c not in df.columns]
    if missing:
        raise StoreCommandError(
            f"{source}: missing columns {missing}; expected transaction_id, fraud"
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
