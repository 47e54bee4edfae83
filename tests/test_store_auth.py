"""The Redis store's AUTH token read from Secrets Manager at start: moto's AWS server on a
loopback port holds the secret, a real redis-server requires the password, and the server
(given only the secret's ARN) authenticates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from serving.errors import StoreAuthUnavailable, StoreUnavailable
from serving.feature_store.auth_secret import read_auth_token
from serving.feature_store.base import Transaction
from serving.feature_store.factory import open_store
from serving.feature_store.redis_store import RedisStore
from serving.settings import Settings, SettingsError
from tests.redis_server import RedisServer
from tests.test_server import Server, _opt_ml
from tests.transaction_replay import send, transaction

REGION = "eu-west-1"
TOKEN = "a-generated-token-0123456789abcdef"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@pytest.fixture(scope="module")
def secret_arn(moto_url: str) -> str:
    client = boto3.client(
        "secretsmanager",
        region_name=REGION,
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return str(client.create_secret(Name="fraud-store-auth", SecretString=TOKEN)["ARN"])


@pytest.fixture()
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the model's environment gives boto3 (credentials, and here moto's endpoint)."""
    env = FAKE_AWS | {"AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="module")
def redis_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=TOKEN)
    yield srv
    srv.stop()


def _record(store: RedisStore) -> None:
    """One transaction recorded: the customer's 1-day window holds it (count 1, its cents)."""

    async def go() -> tuple[int, ...]:
        tx = Transaction("t-1", "t-1", "c-1", "m-1", 1_533_733_500, 4250)
        try:
            (recorded,) = await store.record([tx])
        finally:
            await store.close()
        return recorded.aggregates

    assert asyncio.run(go())[:2] == (1, 4250)


def test_the_settings_take_the_secrets_arn_only_for_a_redis_store() -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:fraud-store-auth-AbCdEf"
    env = {"FRAUD_FEATURE_STORE": "rediss://store:6379", "FRAUD_STORE_AUTH_SECRET_ARN": arn}
    assert Settings.from_env(env, workers=1).store_auth_secret_arn == arn
    with pytest.raises(SettingsError, match="FRAUD_STORE_AUTH_SECRET_ARN"):
        Settings.from_env({"FRAUD_STORE_AUTH_SECRET_ARN": arn}, workers=1)
    with pytest.raises(SettingsError, match="store_auth_secret_arn"):
        Settings.from_env(env | {"FRAUD_STORE_AUTH_SECRET_ARN": TOKEN}, workers=1)


def test_the_store_authenticates_with_the_secrets_token(
    secret_arn: str, aws_env: dict[str, str], redis_with_auth: RedisServer
) -> None:
    # without the token the server refuses (so the next assertion can fail)
    with pytest.raises(StoreUnavailable, match="Authentication"):
        _record(RedisStore(redis_with_auth.url, 300, 5.0))
    settings = Settings.from_env(
        {
            "FRAUD_FEATURE_STORE": redis_with_auth.url,
            "FRAUD_STORE_AUTH_SECRET_ARN": secret_arn,
        },
        workers=1,
    )
    store = open_store(settings)
    assert isinstance(store, RedisStore)
    _record(store)


def test_a_missing_secret_is_named_without_a_value(aws_env: dict[str, str]) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:no-such-secret-AbCdEf"
    with pytest.raises(StoreAuthUnavailable, match="no-such-secret.*ResourceNotFound"):
        read_auth_token(arn)


def test_the_server_reads_the_token_at_start_and_scores_transactions(
    small_package: Path,
    tmp_path: Path,
    secret_arn: str,
    moto_url: str,
    redis_with_auth: RedisServer,
) -> None:
    import redis

    env = FAKE_AWS | {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
        "FRAUD_FEATURE_STORE": redis_with_auth.url,
        "FRAUD_STORE_AUTH_SECRET_ARN": secret_arn,
        "FRAUD_STORE_DEADLINE_MS": "5000",
    }
    srv = Server(_opt_ml(tmp_path, small_package), env)
    try:
        srv.wait_healthy()
        r = send(srv.url, {"transactions": [transaction("auth-1", 1_533_733_500)]})
        assert r.status_code == 200, r.text
        (prediction,) = r.json()["predictions"]
        assert prediction["transaction_id"] == "auth-1"
        assert not prediction.get("degraded"), srv.log.read_text()[-3000:]
    finally:
        srv.stop()
    # the transaction is in the password-protected store; the token never reached the log
    client = redis.Redis.from_url(redis_with_auth.url, password=TOKEN)
    assert client.dbsize() > 0
    assert TOKEN not in srv.log.read_text()


def test_a_server_whose_secret_cannot_be_read_stays_unready_naming_it(
    small_package: Path, tmp_path: Path, moto_url: str, redis_with_auth: RedisServer
) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:absent-AbCdEf"
    env = FAKE_AWS | {
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_url,
        "FRAUD_FEATURE_STORE": redis_with_auth.url,
        "FRAUD_STORE_AUTH_SECRET_ARN": arn,
    }
    srv = Server(_opt_ml(tmp_path, small_package), env)
    try:
        with httpx.Client(timeout=10) as client:
            while True:  # until the load has failed (the test run's timeout bounds it)
                try:
                    r = client.get(srv.url + "/ping")
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                if "absent" in r.text:
                    break
                assert r.status_code == 503
                time.sleep(0.1)
        assert r.status_code == 503 and "StoreAuthUnavailable" in r.text
    finally:
        srv.stop()
