"""Request bodies for SageMaker, Application Auto Scaling and CloudWatch: pure functions.

Kept apart from the calls so ``plan`` shows exactly what ``apply`` sends, and tests can
compare them with botocore's service model (Stubber) where moto lacks the call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from deploy.checks.endpoint_encryption import NVME_FAMILIES
from deploy.config import TERMINATION_WAIT_S, EndpointSpec, deployment_timeout_s
from deploy.errors import SettingsError
from serving.feature_store import AUTH_SECRET_ENV, REDIS_SCHEMES, SECRET_ARN, STORE_ENV

PRODUCTION, SHADOW = "primary", "shadow"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


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
    # the stack's feature store (FeatureStore=true): its URL and the AUTH token's secret
    feature_store: str = ""
    store_auth_secret_arn: str = ""

    def __post_init__(self) -> None:
        if self.subnets and (len(set(self.subnets)) < 2 or not self.security_groups):
            raise SettingsError(
                f"VPC config needs subnets in two Availability Zones and a security group, "
                f"got subnets {list(self.subnets)} and groups {list(self.security_groups)}"
            )
        if self.feature_store and not self.feature_store.startswith(REDIS_SCHEMES):
            raise SettingsError(
                f"feature store {self.feature_store!r}: expected rediss://<FeatureStoreAddress>:6379"
            )
        if self.feature_store and not self.subnets:
            raise SettingsError(
                "the feature store is reached inside the VPC: give --subnet (two AZs) and "
                "--security-group (the stack's EndpointSecurityGroupId)"
            )
        if self.store_auth_secret_arn and not self.feature_store:
            raise SettingsError("a store AUTH secret needs the feature store (--feature-store)")
        if self.store_auth_secret_arn and not re.fullmatch(SECRET_ARN, self.store_auth_secret_arn):
            raise SettingsError(
                f"store AUTH secret {self.store_auth_secret_arn!r} is not a Secrets Manager ARN"
            )

    def store_environment(self) -> dict[str, str]:
        """What the production model's environment gets for the store (the secret's ARN,
        never the token), as the regional template's Model; empty without the store."""
        env = {STORE_ENV: self.feature_store} if self.feature_store else {}
        if self.store_auth_secret_arn:
            env[AUTH_SECRET_ENV] = self.store_auth_secret_arn
        return env


def accepts_volume_key(instance_type: str) -> bool:
    """False for types with local NVMe storage: SageMaker rejects a volume KmsKeyId there."""
    return instance_type.split(".")[1] not in NVME_FAMILIES


def model_name(endpoint: str, model_version: str, store: dict[str, str] | None = None) -> str:
    """Named by model version, plus a digest of the store settings when there are some: a
    model's environment cannot change, so other store settings make another model."""
    if not store:
        return f"{endpoint[:50]}-{model_version[:12]}"
    digest = hashlib.sha256(json.dumps(store, sort_keys=True).encode()).hexdigest()[:8]
    return f"{endpoint[:41]}-{model_version[:12]}-{digest}"


def model_request(
    name: str, endpoint: str, model_data_url: str, platform: Platform, with_store: bool = True
) -> dict[str, Any]:
    """CreateModel. ``with_store`` (the production variant) gives the model the platform's
    feature store, if any; the shadow variant goes without, as in the regional template."""
    store = platform.store_environment() if with_store else {}
    request: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": platform.role_arn,
        "PrimaryContainer": {
            "Image": platform.image_uri,
            "ModelDataUrl": model_data_url,
            "Environment": {"FRAUD_ENDPOINT_NAME": endpoint, **store},
        },
        # the container reaches nothing, S3 included: SageMaker fetches the model for it.
        # With the store it must reach the store and Secrets Manager in its VPC: isolation
        # would cut those connections too, so it is off then, and only then
        "EnableNetworkIsolation": not store,
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


def rollback_alarm_names(endpoint: str) -> list[str]:
    """The regional stack's alarms an update rolls back on. Both ignore missing data, so a
    quiet or standby endpoint does not roll back; the probe's alarms (missing data is a
    failure there) feed the Route 53 health check instead."""
    return [f"{endpoint}-5xx", f"{endpoint}-latency-p99"]


def deployment_config(spec: EndpointSpec, traffic: str | None = None) -> dict[str, Any]:
    """Blue/green with canary (or linear) shifting, baking, and rollback on our alarms; the
    execution timeout covers provisioning, every wait and the termination wait."""
    traffic = traffic or spec.traffic
    routing: dict[str, Any] = {"Type": traffic, "WaitIntervalInSeconds": spec.baking_s}
    step = {"Type": "CAPACITY_PERCENT", "Value": spec.canary_percent}
    if traffic == "CANARY":
        routing["CanarySize"] = step
    elif traffic == "LINEAR":
        routing["LinearStepSize"] = step
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": TERMINATION_WAIT_S,
            "MaximumExecutionTimeoutInSeconds": deployment_timeout_s(
                traffic, spec.canary_percent, spec.baking_s
            ),
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": name} for name in rollback_alarm_names(spec.name)]
        },
    }


def update_request(
    spec: EndpointSpec, config: str, deployment: dict[str, Any], instance_type_changes: bool
) -> dict[str, Any]:
    """UpdateEndpoint: keeps the autoscaled instance count and weights (an update would
    otherwise drop a scaled-out endpoint to the config's initial count), except across an
    instance-type change, where the old type's count means nothing for the new one."""
    request: dict[str, Any] = {
        "EndpointName": spec.name,
        "EndpointConfigName": config,
        "DeploymentConfig": deployment,
        "RetainAllVariantProperties": not instance_type_changes,
    }
    if not instance_type_changes:
        # the new config's capture settings apply; count and weight are kept
        request["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DataCaptureConfig"}]
    return request


def scaling_resource_id(endpoint: str, variant: str = PRODUCTION) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def scalable_target_request(spec: EndpointSpec) -> dict[str, Any]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(spec.name),
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": spec.instance_count,
        "MaxCapacity": spec.max_instances,
    }


def scaling_policy_request(spec: EndpointSpec) -> dict[str, Any]:
    return {
        "PolicyName": f"{spec.name}-invocations-per-instance",
        "ServiceNamespace": "sagemaker",
        "ResourceId": scaling_resource_id(spec.name),
        "ScalableDimension": SCALABLE_DIMENSION,
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
