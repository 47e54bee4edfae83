"""A challenger in a shadow variant, its promotion, and waiting on a rollout. moto ignores
shadow variants and lacks update_endpoint: the request sent to moto is read back from
botocore's event hook, and promotion runs against botocore's Stubber."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from deploy.aws import Clients, client
from deploy.config import AwsSettings, EndpointSpec
from deploy.endpoint import apply
from deploy.errors import AlarmTripped
from deploy.package import upload
from deploy.requests import Platform, model_name
from deploy.rollout import PREVIOUS, REQUESTED, promote, wait
from tests.test_deploy.conftest import ACCOUNT, REGION, endpoint_description, make_tarball
from tests.test_deploy.stack import put_stack_alarms

SPEC = EndpointSpec(name="fraud-shadow", instance_type="ml.c5.xlarge")
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{SPEC.name}"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _endpoint(config: str, state: str = "InService", reason: str | None = None) -> dict[str, Any]:
    return endpoint_description(SPEC.name, config, state, reason)


def test_apply_with_a_challenger_sends_a_shadow_variant(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    records = [
        upload(clients.s3, make_tarball(tmp_path / f"{w}.tar.gz", w), platform.bucket, "m", None)
        for w in (b"champion", b"challenger")
    ]
    sent: list[dict[str, Any]] = []
    clients.sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateEndpointConfig",
        lambda params, **_: sent.append(params),
    )
    put_stack_alarms(clients.cloudwatch, clients.sns, SPEC.name)
    result = apply(clients, SPEC, platform, records[0], shadow=records[1])
    (params,) = sent
    assert params["ProductionVariants"][0]["ModelName"] == result["model"]
    (shadow,) = params["ShadowProductionVariants"]
    assert shadow["ModelName"] == model_name(SPEC.name, records[1].model_version)
    assert shadow["InitialInstanceCount"] >= 2


def test_promote_makes_the_shadow_model_production(aws: AwsSettings, platform: Platform) -> None:
    sagemaker = client(aws, "sagemaker")
    clients = dataclasses.replace(Clients.connect(aws), sagemaker=sagemaker)
    stub = Stubber(sagemaker)
    stub.add_response("describe_endpoint", _endpoint("cfg-with-shadow"))
    variant = {
        "VariantName": "shadow",
        "ModelName": "challenger-model",
        "InstanceType": "ml.c5.xlarge",
    }
    stub.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "cfg-with-shadow",
            "EndpointConfigArn": ARN + "-config",
            "ProductionVariants": [{**variant, "VariantName": "primary", "ModelName": "champion"}],
            "ShadowProductionVariants": [variant],
            "CreationTime": NOW,
        },
    )
    stub.add_client_error(
        "describe_endpoint_config", "ValidationException", "Could not find endpoint config"
    )
    create = {
        "EndpointConfigName": ANY,
        "ProductionVariants": [
            {
                "VariantName": "primary",
                "ModelName": "challenger-model",
                "InitialInstanceCount": 2,
                "InstanceType": "ml.c5.xlarge",
                "InitialVariantWeight": 1.0,
            }
        ],
        "DataCaptureConfig": ANY,
        "KmsKeyId": platform.kms_key_arn,
        "Tags": ANY,
    }  # no ShadowProductionVariants: the challenger is now the production model
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "-c2"}, create)
    stub.add_response("describe_endpoint", _endpoint("cfg-with-shadow"))
    stub.add_response("list_tags", {"Tags": []})
    current = {"EndpointConfigName": "cfg-with-shadow", "EndpointConfigArn": ARN + "-config"}
    primary = {**variant, "VariantName": "primary"}
    for name in ("cfg-with-shadow", "cfg-promoted"):
        current["EndpointConfigName"] = name
        stub.add_response(
            "describe_endpoint_config",
            {**current, "ProductionVariants": [primary], "CreationTime": NOW},
        )
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": ARN},
        {
            "EndpointName": SPEC.name,
            "EndpointConfigName": ANY,
            "DeploymentConfig": ANY,
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": ANY,
        },
    )
    stub.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": ANY})
    with stub:
        result = promote(clients, SPEC, platform)
    stub.assert_no_pending_responses()
    assert result["action"] == "updated" and result["previous"] == "cfg-with-shadow"


def test_wait_raises_alarm_tripped_when_sagemaker_rolled_back(aws: AwsSettings) -> None:
    sagemaker = client(aws, "sagemaker")
    clients = dataclasses.replace(Clients.connect(aws), sagemaker=sagemaker)
    stub = Stubber(sagemaker)
    tags = {"Tags": [{"Key": REQUESTED, "Value": "v2"}, {"Key": PREVIOUS, "Value": "v1"}]}
    for state, config in (("Updating", "v1"), ("InService", "v1"), ("InService", "v1")):
        stub.add_response("describe_endpoint", _endpoint(config, state))
        stub.add_response("list_tags", tags)
    with stub, pytest.raises(AlarmTripped, match="rolled back by SageMaker to v1"):
        wait(clients, SPEC.name, timeout_s=5, interval_s=0.01)
    stub.assert_no_pending_responses()
