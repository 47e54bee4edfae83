"""A second model version goes out through the guardrailed update, and ``status`` /
``rollback`` read SageMaker's own rollback. moto lacks ``update_endpoint``, so SageMaker is
botocore's Stubber here (it validates every request and response against the service
model); S3, SNS, CloudWatch and Application Auto Scaling stay on moto's server."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from deploy.aws import Clients, client
from deploy.config import AwsSettings, EndpointSpec
from deploy.endpoint import apply
from deploy.package import upload
from deploy.requests import Platform, model_name
from deploy.rollout import PREVIOUS, REQUESTED, rollback, status
from tests.test_deploy.conftest import ACCOUNT, REGION, endpoint_description, make_tarball

SPEC = EndpointSpec(name="fraud-canary", instance_type="ml.p3.2xlarge", canary_percent=10)
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{SPEC.name}"


def _endpoint(config: str, state: str = "InService", reason: str | None = None) -> dict[str, Any]:
    return endpoint_description(SPEC.name, config, state, reason)


def _tags(requested: str, previous: str) -> dict[str, Any]:
    return {"Tags": [{"Key": REQUESTED, "Value": requested}, {"Key": PREVIOUS, "Value": previous}]}


@pytest.fixture()
def stubbed(aws: AwsSettings) -> tuple[Clients, Stubber]:
    moto = Clients.connect(aws)
    sagemaker = client(aws, "sagemaker")
    return dataclasses.replace(moto, sagemaker=sagemaker), Stubber(sagemaker)


def test_second_version_goes_out_with_canary_and_rollback_alarms(
    stubbed: tuple[Clients, Stubber], platform: Platform, tmp_path: Path
) -> None:
    clients, stub = stubbed
    tarball = make_tarball(tmp_path / "model.tar.gz", b"v2")
    record = upload(clients.s3, tarball, platform.bucket, "models", platform.kms_key_arn)
    v2_model = model_name(SPEC.name, record.model_version)
    missing = {"service_error_code": "ValidationException", "service_message": "Could not find"}
    stub.add_client_error("describe_model", **missing)
    stub.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{v2_model}"},
        {
            "ModelName": v2_model,
            "ExecutionRoleArn": platform.role_arn,
            "PrimaryContainer": ANY,
            "EnableNetworkIsolation": True,
            "Tags": ANY,
        },
    )
    stub.add_client_error("describe_endpoint_config", **missing)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "-config"})
    stub.add_response("describe_endpoint", _endpoint("fraud-canary-v1"))
    update = {
        "EndpointName": SPEC.name,
        "EndpointConfigName": ANY,
        "DeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                    "WaitIntervalInSeconds": 600,
                },
                "TerminationWaitInSeconds": 300,
                "MaximumExecutionTimeoutInSeconds": 2400,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [
                    {"AlarmName": "fraud-canary-5xx"},
                    {"AlarmName": "fraud-canary-latency-p99"},
                    {"AlarmName": "fraud-canary-invocations-drop"},
                ]
            },
        },
    }
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, update)
    stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": ANY})
    with stub:
        result = apply(clients, SPEC, platform, record)
    stub.assert_no_pending_responses()
    assert result["action"] == "updated"
    assert result["previous"] == "fraud-canary-v1"
    assert result["config"].startswith(v2_model)
    # the alarms the rollback watches exist (moto) and notify the topic
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=result["alarms"])["MetricAlarms"]
    assert len(alarms) == 3 and all(a["AlarmActions"] == [result["topic"]] for a in alarms)


def test_status_reports_sagemakers_rollback_and_rollback_does_not_repeat_it(
    stubbed: tuple[Clients, Stubber],
) -> None:
    clients, stub = stubbed
    reason = "Alarm fraud-canary-5xx went into ALARM; rolled back to the previous config"
    for _ in range(2):
        stub.add_response("describe_endpoint", _endpoint("v1", reason=reason))
        stub.add_response("list_tags", _tags(requested="v2", previous="v1"))
    with stub:
        state = status(clients, SPEC.name)
        message = rollback(clients, SPEC)
    stub.assert_no_pending_responses()  # and no update_endpoint: it would have no stub
    assert state.rolled_back_by_sagemaker
    assert "rolled back by SageMaker to v1" in state.describe()
    assert "not rolling back again" in message


def test_explicit_rollback_returns_to_the_previous_config(
    stubbed: tuple[Clients, Stubber],
) -> None:
    clients, stub = stubbed
    stub.add_response("describe_endpoint", _endpoint("v2"))
    stub.add_response("list_tags", _tags(requested="v2", previous="v1"))
    stub.add_response("describe_endpoint", _endpoint("v2"))
    expected = {"EndpointName": SPEC.name, "EndpointConfigName": "v1", "DeploymentConfig": ANY}
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, expected)
    stub.add_response(
        "add_tags",
        {},
        {
            "ResourceArn": ARN,
            "Tags": [{"Key": PREVIOUS, "Value": "v2"}, {"Key": REQUESTED, "Value": "v1"}],
        },
    )
    with stub:
        assert "rolling back from v2 to v1" in rollback(clients, SPEC)
    stub.assert_no_pending_responses()
