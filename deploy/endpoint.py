"""``fraud deploy apply`` and ``plan``: the regional endpoint and everything that watches it.

``apply`` is idempotent: models are named by model version, endpoint configs by a digest of
their content, the SNS topic and alarms are upserts, the scalable target is re-registered
with the same bounds. ``plan`` makes read-only calls and lists what ``apply`` would change.
"""

from __future__ import annotations

from typing import Any

from deploy.aws import Clients, call, find
from deploy.config import EndpointSpec
from deploy.errors import SettingsError
from deploy.package import PackageRecord, check_uploaded
from deploy.requests import (
    Platform,
    alarm_names,
    alarm_requests,
    deployment_config,
    endpoint_config_request,
    model_name,
    model_request,
    scalable_target_request,
    scaling_policy_request,
    topic_name,
)
from deploy.rollout import roll_out


def ensure_topic(clients: Clients, spec: EndpointSpec, platform: Platform) -> str:
    # CreateTopic returns the existing topic's ARN when the name and attributes match
    response = call(
        f"create SNS topic {topic_name(spec.name)}",
        clients.sns.create_topic,
        Name=topic_name(spec.name),
        Attributes={"KmsMasterKeyId": platform.kms_key_arn},
    )
    return str(response["TopicArn"])


def ensure_alarms(clients: Clients, spec: EndpointSpec, topic_arn: str) -> list[str]:
    for request in alarm_requests(spec, topic_arn):
        call(f"put alarm {request['AlarmName']}", clients.cloudwatch.put_metric_alarm, **request)
    return alarm_names(spec.name)


def ensure_model(clients: Clients, endpoint: str, record: PackageRecord, platform: Platform) -> str:
    name = model_name(endpoint, record.model_version)
    sm = clients.sagemaker
    if find(f"describe model {name}", sm.describe_model, ModelName=name) is None:
        request = model_request(name, endpoint, record.s3_uri, platform)
        call(f"create model {name}", sm.create_model, **request)
    return name


def check_subnets(ec2: Any, platform: Platform) -> None:
    """Subnets must span two Availability Zones, or SageMaker cannot spread the instances."""
    if not platform.subnets:
        return
    found = call("describe subnets", ec2.describe_subnets, SubnetIds=list(platform.subnets))
    zones = {s["AvailabilityZone"] for s in found["Subnets"]}
    if len(zones) < 2:
        raise SettingsError(
            f"subnets {list(platform.subnets)} are all in {', '.join(sorted(zones))}: "
            "give subnets in two Availability Zones"
        )


def ensure_scaling(clients: Clients, spec: EndpointSpec) -> None:
    aas = clients.autoscaling
    target = scalable_target_request(spec)
    call(f"register scalable target {target['ResourceId']}", aas.register_scalable_target, **target)
    policy = scaling_policy_request(spec)
    call(f"put scaling policy {policy['PolicyName']}", aas.put_scaling_policy, **policy)


def apply(
    clients: Clients,
    spec: EndpointSpec,
    platform: Platform,
    record: PackageRecord,
    shadow: PackageRecord | None = None,
) -> dict[str, Any]:
    """Alarms first (the update's rollback needs them), then models, endpoint, scaling."""
    for rec in (record, shadow):
        if rec is not None:
            check_uploaded(clients.s3, rec)
    check_subnets(clients.ec2, platform)
    topic_arn = ensure_topic(clients, spec, platform)
    alarms = ensure_alarms(clients, spec, topic_arn)
    production = ensure_model(clients, spec.name, record, platform)
    challenger = ensure_model(clients, spec.name, shadow, platform) if shadow else None
    result: dict[str, Any] = roll_out(clients, spec, platform, production, challenger)
    ensure_scaling(clients, spec)
    return {
        **result,
        "model": production,
        "shadow": challenger,
        "alarms": alarms,
        "topic": topic_arn,
    }


def plan(
    clients: Clients,
    spec: EndpointSpec,
    platform: Platform,
    record: PackageRecord,
    shadow: PackageRecord | None = None,
) -> list[str]:
    """Lines naming each change ``apply`` would make; read-only calls only."""
    sm, lines = clients.sagemaker, []
    models = [model_name(spec.name, r.model_version) for r in (record, shadow) if r is not None]
    for name in models:
        if find(f"describe model {name}", sm.describe_model, ModelName=name) is None:
            lines.append(f"create model {name}")
    request = endpoint_config_request(spec, platform, models[0], models[1] if shadow else None)
    config = request["EndpointConfigName"]
    if (
        find(f"describe config {config}", sm.describe_endpoint_config, EndpointConfigName=config)
        is None
    ):
        lines.append(f"create endpoint config {config}")
    current = find(f"describe endpoint {spec.name}", sm.describe_endpoint, EndpointName=spec.name)
    if current is None:
        lines.append(f"create endpoint {spec.name} on {config}")
    elif current["EndpointConfigName"] != config:
        routing = deployment_config(spec)["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
        lines.append(
            f"update endpoint {spec.name}: {current['EndpointConfigName']} -> {config} "
            f"({routing['Type']} {spec.canary_percent} %, baking {spec.baking_s} s, "
            f"rollback on {', '.join(alarm_names(spec.name))})"
        )
    existing = call(
        "describe alarms", clients.cloudwatch.describe_alarms, AlarmNames=alarm_names(spec.name)
    )
    have = {a["AlarmName"] for a in existing.get("MetricAlarms", [])}
    lines += [f"create alarm {n}" for n in alarm_names(spec.name) if n not in have]
    return lines or [f"{spec.name}: no change"]
