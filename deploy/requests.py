"""Request bodies for SageMaker, Application Auto Scaling and CloudWatch: pure functions.

Kept apart from the calls so ``plan`` shows exactly what ``apply`` sends, and tests can
compare them with botocore's service model (Stubber) where moto lacks the call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from deploy.checks.endpoint_encryption import NVME_FAMILIES
from deploy.config import EndpointSpec
from deploy.errors import SettingsError

PRODUCTION, SHADOW = "primary", "shadow"


@dataclasses.dataclass(frozen=True)
class Platform:
    """What the regional stack created (its outputs) and the serving image."""

    role_arn: str
    image_uri: str
    kms_key_arn: str
    bucket: str
    capture_prefix: str = "capture"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.subnets and (len(set(self.subnets)) < 2 or not self.security_groups):
            raise SettingsError(
                f"VPC config needs subnets in two Availability Zones and a security group, "
                f"got subnets {list(self.subnets)} and groups {list(self.security_groups)}"
            )


def accepts_volume_key(instance_type: str) -> bool:
    """False for types with local NVMe storage: SageMaker rejects a volume KmsKeyId there."""
    return instance_type.split(".")[1] not in NVME_FAMILIES


def model_name(endpoint: str, model_version: str) -> str:
    return f"{endpoint[:50]}-{model_version[:12]}"


def model_request(
    name: str, endpoint: str, model_data_url: str, platform: Platform
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": platform.role_arn,
        "PrimaryContainer": {
            "Image": platform.image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": {"FRAUD_ENDPOINT_NAME": endpoint},
        },
        # the container reaches nothing, S3 included: SageMaker fetches the model for it
        "EnableNetworkIsolation": True,
        "Tags": [{"Key": "fraud:endpoint", "Value": endpoint}],
    }
    if platform.subnets:
        request["VpcConfig"] = {
            "Subnets": list(platform.subnets),
            "SecurityGroupIds": list(platform.security_groups),
        }
    return request


def _variant(name: str, model: str, spec: EndpointSpec) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": spec.instance_count,
        "InstanceType": spec.instance_type,
        "InitialVariantWeight": 1.0,
    }


def endpoint_config_request(
    spec: EndpointSpec, platform: Platform, production_model: str, shadow_model: str | None
) -> dict[str, Any]:
    """The config, named by a digest of its content: same content, same name (idempotent)."""
    body: dict[str, Any] = {
        "ProductionVariants": [_variant(PRODUCTION, production_model, spec)],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": spec.capture_percent,
            "DestinationS3Uri": f"s3://{platform.bucket}/{platform.capture_prefix}",
            "KmsKeyId": platform.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        },
    }
    if shadow_model is not None:
        body["ShadowProductionVariants"] = [_variant(SHADOW, shadow_model, spec)]
    if accepts_volume_key(spec.instance_type):
        body["KmsKeyId"] = platform.kms_key_arn
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{production_model[:54]}-{digest}"
    return {
        "EndpointConfigName": name,
        **body,
        "Tags": [{"Key": "fraud:endpoint", "Value": spec.name}],
    }


def topic_name(endpoint: str) -> str:
    return f"{endpoint}-alarms"


def alarm_names(endpoint: str) -> list[str]:
    return [f"{endpoint}-5xx", f"{endpoint}-latency-p99", f"{endpoint}-invocations-drop"]


def alarm_requests(spec: EndpointSpec, topic_arn: str) -> list[dict[str, Any]]:
    dims = [
        {"Name": "EndpointName", "Value": spec.name},
        {"Name": "VariantName", "Value": PRODUCTION},
    ]
    common = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": dims,
        "Period": 60,
        "AlarmActions": [topic_arn],
        "OKActions": [topic_arn],
    }
    errors, latency, drop = alarm_names(spec.name)
    return [
        {
            **common,
            "AlarmName": errors,
            "AlarmDescription": "model container answers 5XX",
            "MetricName": "Invocation5XXErrors",
            "Statistic": "Sum",
            "Threshold": 5.0,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 2,
            "TreatMissingData": "notBreaching",
        },
        {
            **common,
            "AlarmName": latency,
            "AlarmDescription": "model latency p99 above the scoring budget (microseconds)",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "Threshold": float(spec.latency_p99_us),
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 3,
            "TreatMissingData": "notBreaching",
        },
        {
            **common,
            "AlarmName": drop,
            "AlarmDescription": "invocations dropped: callers cannot reach the endpoint",
            "MetricName": "Invocations",
            "Statistic": "Sum",
            "Period": 300,
            "Threshold": float(spec.min_invocations_per_5min),
            "ComparisonOperator": "LessThanThreshold",
            "EvaluationPeriods": 2,
            "TreatMissingData": "breaching",
        },
    ]


def deployment_config(spec: EndpointSpec, traffic: str | None = None) -> dict[str, Any]:
    """Blue/green with canary (or linear) shifting, baking, and rollback on our alarms."""
    traffic = traffic or spec.traffic
    routing: dict[str, Any] = {"Type": traffic, "WaitIntervalInSeconds": spec.baking_s}
    step = {"Type": "CAPACITY_PERCENT", "Value": spec.canary_percent}
    if traffic == "CANARY":
        routing["CanarySize"] = step
    elif traffic == "LINEAR":
        routing["LinearStepSize"] = step
    steps = 2 if traffic != "LINEAR" else -(-100 // spec.canary_percent)
    max_s = min(28_800, max(1_800, steps * spec.baking_s + 1_200))
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": max_s,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": name} for name in alarm_names(spec.name)]
        },
    }


def scaling_resource_id(endpoint: str, variant: str = PRODUCTION) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def scalable_target_request(spec: EndpointSpec) -> dict[str, Any]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(spec.name),
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": spec.instance_count,
        "MaxCapacity": spec.max_instances,
    }


def scaling_policy_request(spec: EndpointSpec) -> dict[str, Any]:
    return {
        "PolicyName": f"{spec.name}-invocations-per-instance",
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(spec.name),
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": spec.target_invocations_per_instance,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    }
