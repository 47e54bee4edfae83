"""``fraud deploy package``, ``plan``, ``apply`` and ``status`` through the CLI, on moto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import run
from deploy.aws import Clients
from deploy.config import AwsSettings
from deploy.requests import Platform
from tests.test_deploy.conftest import make_tarball
from tests.test_deploy.stack import put_stack_alarms


def test_package_plan_apply_status_from_the_command_line(
    moto_env: None,
    aws: AwsSettings,
    platform: Platform,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tarball = make_tarball(tmp_path / "model.tar.gz")
    clients = Clients.connect(aws)
    put_stack_alarms(clients.cloudwatch, clients.sns, "fraud-cli")
    artifacts = tmp_path / "artifacts"

    package = ["deploy", "package", "--tarball", str(tarball), "--bucket", platform.bucket]
    assert run(package, artifacts) == 0
    packaged = json.loads(capsys.readouterr().out)
    assert packaged["s3_uri"].startswith(f"s3://{platform.bucket}/models/")
    assert (tmp_path / "model.tar.gz.deploy.json").exists()

    endpoint = [
        "--endpoint", "fraud-cli", "--instance-type", "ml.p3.2xlarge",
        "--role-arn", platform.role_arn, "--image-uri", platform.image_uri,
        "--kms-key-arn", platform.kms_key_arn, "--bucket", platform.bucket,
        "--tarball", str(tarball),
    ]  # fmt: skip
    assert run(["deploy", "plan", *endpoint], artifacts) == 0
    assert "create endpoint fraud-cli" in capsys.readouterr().out
    assert run(["deploy", "apply", *endpoint, "--wait", "--timeout-s", "30"], artifacts) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["action"] == "created" and "InService" in applied["state"]
    assert run(["deploy", "status", "--endpoint", "fraud-cli"], artifacts) == 0
    assert capsys.readouterr().out.startswith("fraud-cli: InService on fraud-cli-")
    assert run(["deploy", "status", "--endpoint", "fraud-missing"], artifacts) == 1
    assert "not found" in capsys.readouterr().err
