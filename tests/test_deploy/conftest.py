"""Fixtures for the deploy tests: moto's AWS server on a loopback port, fake credentials,
and a small model.tar.gz laid out like the real package (manifest with per-file SHA-256)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from deploy.aws import Clients, client
from deploy.config import AwsSettings
from deploy.requests import Platform

REGION = "eu-west-1"
ACCOUNT = "123456789012"


@pytest.fixture()
def moto_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment ``fraud deploy`` reads, pointed at moto's server."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "FRAUD_AWS_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def aws(moto_url: str) -> AwsSettings:
    return AwsSettings(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=moto_url,
    )


@pytest.fixture()
def clients(aws: AwsSettings) -> Clients:
    return Clients.connect(aws)


@pytest.fixture(scope="session")
def platform(aws: AwsSettings) -> Platform:
    """A bucket and KMS key in moto, as the regional stack would have made them."""
    bucket = "fraud-artefacts"
    client(aws, "s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    key = client(aws, "kms").create_key(Description="fraud deploy test")["KeyMetadata"]["Arn"]
    return Platform(
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/fraud-endpoint",
        image_uri=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/fraud-serve:1",
        kms_key_arn=key,
        bucket=bucket,
    )


def endpoint_description(
    name: str, config: str, state: str = "InService", reason: str | None = None
) -> dict[str, Any]:
    """A DescribeEndpoint response, for botocore's Stubber."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
        "EndpointConfigName": config,
        "EndpointStatus": state,
        "CreationTime": now,
        "LastModifiedTime": now,
    }
    if reason:
        out["FailureReason"] = reason
    return out


def make_tarball(path: Path, weights: bytes = b"weights-v1") -> Path:
    files = {"model.onnx": b"onnx-" + weights, "model.pt": weights, "thresholds.json": b"{}"}
    manifest = {
        "model_version": hashlib.sha256(weights).hexdigest(),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
