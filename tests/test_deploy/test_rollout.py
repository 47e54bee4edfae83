"""A second model version goes out through the guardrailed update (capacity retained, the
scalable target deregistered before an instance-type change, rollback alarms that ignore
missing data, an execution timeout that covers every wait), and ``status`` / ``rollback``
read SageMaker's own rollback. moto lacks ``update_endpoint``, so SageMaker is botocore's
Stubber here (it validates every request and response against the service model); S3, SNS,
CloudWatch and Application Auto Scaling stay on moto's server."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from deploy.aws import Clients, client
from deploy.config import AwsSettings, EndpointSpec, deployment_timeout_s
from deploy.endpoint import apply
from deploy.errors import Conflict, SettingsError
from deploy.package import PackageRecord, upload
from deploy.requests import Platform, model_name, scalable_target_request
from deploy.rollout import PREVIOUS, REQUESTED, STACK_TAG, rollback, status
from tests.test_deploy.conftest import ACCOUNT, REGION, endpoint_description, make_tarball
from tests.test_deploy.stack import load, put_stack_alarms

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


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MISSING = {"service_error_code": "ValidationException", "service_message": "Could not find"}


def _config(name: str, instance_type: str) -> dict[str, Any]:
    variant = {"VariantName": "primary", "ModelName": "m", "InstanceType": instance_type}
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"{ARN}-config",
        "ProductionVariants": [variant],
        "CreationTime": NOW,
    }


def _new_version(
    clients: Clients,
    stub: Stubber,
    platform: Platform,
    tmp_path: Path,
    weights: bytes,
    tags: list[dict[str, str]] | None = None,
) -> PackageRecord:
    """Stubs up to the update: the new model and config created, the endpoint on v1."""
    put_stack_alarms(clients.cloudwatch, clients.sns, SPEC.name)
    tarball = make_tarball(tmp_path / "model.tar.gz", weights)
    record = upload(clients.s3, tarball, platform.bucket, "models", platform.kms_key_arn)
    model = model_name(SPEC.name, record.model_version)
    stub.add_client_error("describe_model", **MISSING)
    stub.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{model}"},
        {
            "ModelName": model,
            "ExecutionRoleArn": platform.role_arn,
            "PrimaryContainer": ANY,
            "EnableNetworkIsolation": True,
            "Tags": ANY,
        },
    )
    stub.add_client_error("describe_endpoint_config", **MISSING)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "-config"})
    stub.add_response("describe_endpoint", _endpoint("fraud-canary-v1"))
    stub.add_response("list_tags", {"Tags": tags or []})
    return record


def test_second_version_goes_out_with_canary_retained_capacity_and_rollback_alarms(
    stubbed: tuple[Clients, Stubber], platform: Platform, tmp_path: Path
) -> None:
    clients, stub = stubbed
    record = _new_version(clients, stub, platform, tmp_path, b"v2")
    stub.add_response("describe_endpoint_config", _config("fraud-canary-v1", "ml.p3.2xlarge"))
    stub.add_response("describe_endpoint_config", _config("new", "ml.p3.2xlarge"))
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
                # 1,800 provisioning + 2 x 600 baking + 300 termination + 300 margin
                "MaximumExecutionTimeoutInSeconds": 3600,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [
                    {"AlarmName": "fraud-canary-5xx"},
                    {"AlarmName": "fraud-canary-latency-p99"},
                ]
            },
        },
        # the scaled-out instance count and weights survive the update; capture is the new one
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DataCaptureConfig"}],
    }
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, update)
    stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": ANY})
    stub.add_response("describe_endpoint", _endpoint("fraud-canary-v1", "Updating"))
    with stub:
        result = apply(clients, SPEC, platform, record)
    stub.assert_no_pending_responses()
    assert result["action"] == "updated" and result["previous"] == "fraud-canary-v1"
    assert result["config"].startswith(model_name(SPEC.name, record.model_version))
    assert result["scaling"].startswith("pending: fraud-canary is Updating")
    # the rollback alarms (the stack's, on moto) ignore missing data: a quiet endpoint is fine
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=result["alarms"])["MetricAlarms"]
    assert len(alarms) == 2 and {a["TreatMissingData"] for a in alarms} == {"notBreaching"}


def test_instance_type_change_deregisters_the_scalable_target_before_the_update(
    stubbed: tuple[Clients, Stubber], platform: Platform, tmp_path: Path
) -> None:
    clients, stub = stubbed
    clients.autoscaling.register_scalable_target(**scalable_target_request(SPEC))
    order: list[str] = []
    for c in (clients.sagemaker, clients.autoscaling):
        c.meta.events.register("before-call.*.*", lambda model, **_: order.append(model.name))
    record = _new_version(clients, stub, platform, tmp_path, b"v3-on-g4dn")
    stub.add_response("describe_endpoint_config", _config("fraud-canary-v1", "ml.p3.2xlarge"))
    stub.add_response("describe_endpoint_config", _config("new", "ml.g4dn.xlarge"))
    update = {
        "EndpointName": SPEC.name,
        "EndpointConfigName": ANY,
        "DeploymentConfig": ANY,
        "RetainAllVariantProperties": False,  # the p3 fleet's count means nothing on g4dn
    }
    stub.add_response("update_endpoint", {"EndpointArn": ARN}, update)
    stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": ANY})
    stub.add_response("describe_endpoint", _endpoint("fraud-canary-v1", "Updating"))
    g4dn = dataclasses.replace(SPEC, instance_type="ml.g4dn.xlarge")
    with stub:
        apply(clients, g4dn, platform, record)
    stub.assert_no_pending_responses()
    assert order.index("DeregisterScalableTarget") < order.index("UpdateEndpoint")
    targets = clients.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")
    assert not [t for t in targets["ScalableTargets"] if SPEC.name in t["ResourceId"]]


def test_an_endpoint_the_stack_created_is_changed_through_the_stack(
    stubbed: tuple[Clients, Stubber], platform: Platform, tmp_path: Path
) -> None:
    clients, stub = stubbed
    stack = [{"Key": STACK_TAG, "Value": "fraud-regional"}]
    record = _new_version(clients, stub, platform, tmp_path, b"v4", tags=stack)
    with stub, pytest.raises(Conflict, match="belongs to CloudFormation stack fraud-regional"):
        apply(clients, SPEC, platform, record)
    stub.assert_no_pending_responses()  # and no update_endpoint: it would have no stub


def resources_of(template: str) -> list[dict[str, Any]]:
    return list(load(template)["Resources"].values())


def test_execution_timeout_covers_every_wait() -> None:
    assert deployment_timeout_s("CANARY", 10, 600) == 1800 + 2 * 600 + 300 + 300
    assert deployment_timeout_s("LINEAR", 20, 600) == 1800 + 5 * 600 + 300 + 300
    with pytest.raises(SettingsError, match="above SageMaker's 28800 s limit"):
        EndpointSpec(name="slow", traffic="LINEAR", canary_percent=10, baking_s=3000)
    # the stack's fixed timeout holds the longest canary its BakingSeconds allows
    props = load("regional.yaml")["Resources"]["Endpoint"]["Properties"]
    policy = props["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    longest = load("regional.yaml")["Parameters"]["BakingSeconds"]["MaxValue"]
    assert policy["MaximumExecutionTimeoutInSeconds"] >= deployment_timeout_s(
        "CANARY", 10, int(longest)
    )
    assert props["RetainAllVariantProperties"] is True
    # the stack's instance-type change goes through Autoscaling=false (no scaling target)
    scaling = [r for r in resources_of("regional.yaml") if "ApplicationAutoScaling" in r["Type"]]
    assert {r["Condition"] for r in scaling} == {"MakeScaling"}
    assert {"Fn::Equals": [{"Ref": "Autoscaling"}, "true"]} in load("regional.yaml")["Conditions"][
        "MakeScaling"
    ]["Fn::And"]
    rollback_alarms = {
        a["AlarmName"]["Ref"]
        for a in props["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    }
    resources = load("regional.yaml")["Resources"]
    assert {resources[a]["Properties"]["TreatMissingData"] for a in rollback_alarms} == {
        "notBreaching"
    }


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
    stub.add_response("describe_endpoint_config", _config("v2", "ml.p3.2xlarge"))
    stub.add_response("describe_endpoint_config", _config("v1", "ml.p3.2xlarge"))
    expected = {
        "EndpointName": SPEC.name,
        "EndpointConfigName": "v1",
        "DeploymentConfig": ANY,
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": ANY,
    }
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
