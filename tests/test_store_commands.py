"""``fraud features load`` and ``fraud labels ingest`` from ``s3://`` objects on moto's server
(boto3 pointed at it by ``AWS_ENDPOINT_URL``), into the embedded store and a real
redis-server; a missing bucket or key is one line on stderr and exit status 1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest

from cli.main import run
from core.windows import id_key
from serving.feature_store.embedded import EmbeddedStore
from tests.redis_server import RedisServer

BUCKET = "fraud-store-inputs"
UNKNOWN = 99_999_999


@pytest.fixture(scope="module")
def s3(moto_url: str) -> object:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture()
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a host gives boto3: credentials, and here moto's endpoint for every service."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def history(small_transactions: pd.DataFrame) -> pd.DataFrame:
    """Ten days of a tenth of the customers: a few thousand transactions."""
    df = small_transactions
    return df[(df["tx_datetime"] < pd.Timestamp(2018, 6, 11)) & (df["customer_id"] < 30)]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis-cli"))
    yield srv
    srv.stop()


def _put(s3: object, key: str, df: pd.DataFrame) -> str:
    buf = io.BytesIO()
    if key.endswith(".parquet"):
        df.to_parquet(buf, index=False)
    elif key.endswith(".csv"):
        df.to_csv(buf, index=False)
    else:
        buf.write(df.to_json(orient="records", lines=True).encode())
    s3.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())  # type: ignore[attr-defined]
    return f"s3://{BUCKET}/{key}"


def _fraud(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> dict[str, object]:
    assert run(list(args), tmp_path) == 0
    return dict(json.loads(capsys.readouterr().out))


def _labels(history: pd.DataFrame) -> pd.DataFrame:
    """Three genuine transactions labelled fraud, and one id no store holds."""
    ids = history.loc[history["is_fraud"] == 0, "transaction_id"].iloc[:3].tolist()
    return pd.DataFrame({"transaction_id": [*ids, UNKNOWN], "fraud": [1, 1, 1, 1]})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_labels_from_s3_reach_the_embedded_store(
    suffix: str,
    s3: object,
    aws_env: None,
    history: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snapshot = tmp_path / "embedded.pickle"
    source = _put(s3, f"history/{suffix[1:]}/transactions.parquet", history)
    loaded = _fraud(capsys, tmp_path, "features", "load", source, "--store-path", str(snapshot))
    assert loaded["transactions_loaded"] == len(history)
    labels = _labels(history)
    uri = _put(s3, f"labels/day-1{suffix}", labels)
    ingested = _fraud(capsys, tmp_path, "labels", "ingest", uri, "--store-path", str(snapshot))
    assert ingested == {"labels_accepted": 3, "unknown_transaction_ids": [UNKNOWN]}
    store = EmbeddedStore.open(300, snapshot)
    fraud = [store.label_of(id_key(int(i))) for i in labels["transaction_id"].iloc[:3]]
    assert fraud == [True, True, True]


def test_labels_from_s3_reach_the_redis_store(
    s3: object,
    aws_env: None,
    history: pd.DataFrame,
    redis_server: RedisServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    source = _put(s3, "history/redis/transactions.parquet", history)
    store = ("--store", redis_server.url)
    loaded = _fraud(capsys, tmp_path, "features", "load", source, *store)
    assert loaded == {"transactions_loaded": len(history), "store": "redis"}
    labels = _labels(history)
    uri = _put(s3, "labels/redis.csv", labels)
    ingested = _fraud(capsys, tmp_path, "labels", "ingest", uri, *store)
    assert ingested == {"labels_accepted": 3, "unknown_transaction_ids": [UNKNOWN]}
    for i in labels["transaction_id"].iloc[:3]:
        assert client.get(f"fraud:tx:{id_key(int(i))}")[:1] == b"1"  # the label flag


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (f"s3://{BUCKET}/labels/absent.csv", "NoSuchKey"),
        ("s3://no-such-bucket-here/labels.csv", "NoSuchBucket"),
        (f"s3://{BUCKET}/", "expected s3://bucket/key"),
    ],
)
def test_a_missing_object_is_one_line_and_exit_status_1(
    uri: str,
    expected: str,
    s3: object,
    aws_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snapshot = tmp_path / "embedded.pickle"
    assert run(["labels", "ingest", uri, "--store-path", str(snapshot)], tmp_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and uri in err and expected in err
    assert not snapshot.exists()  # the store was never opened


def test_labels_with_a_missing_column_from_s3_are_refused_naming_it(
    s3: object, aws_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _put(s3, "labels/no-fraud-column.csv", pd.DataFrame({"transaction_id": [1, 2]}))
    assert run(["labels", "ingest", uri, "--store-path", str(tmp_path / "s.pickle")], tmp_path) == 1
    err = capsys.readouterr().err
    assert f"{uri}: missing columns ['fraud']" in err
