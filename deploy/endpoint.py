"""``fraud deploy apply`` and ``plan``: the regional endpoint's models, configs, endpoint and
scaling.

One owner per resource: the regional stack owns the key, bucket, roles, topic, alarms and
probe, and ``apply`` only reads them (it refuses to run before the stack's rollback alarms
exist); ``apply`` owns what it creates (models, configs, the endpoint, its scalable target)
and refuses an endpoint the stack created (change that one through the stack).

``apply`` is idempotent: models are named by model version, endpoint configs by a digest of
their content, the scalable target is re-registered with the same bounds once the endpoint
is in service. ``plan`` makes read-only calls and lists what ``apply`` would change.
"""

from __future__ import annotations

from typing import Any

from deploy.aws import Clients, call, find
from deploy.config import EndpointSpec
from deploy.errors import NotFound, SettingsError
from deploy.package import PackageRecord, check_uploaded
from deploy.requests import (
    Platform,
    deployment_config,
    endpoint_config_request,
    model_name,
    model_request,
    rollback_alarm_names,
    scalable_target_request,
    scaling_policy_request,
)
from deploy.rollout import roll_out


def check_alarms(clients: Clients, spec: EndpointSpec) -> list[str]:
    """The rollback alarms the regional stack owns; an update without them has no guardrail."""
    names = rollback_alarm_names(spec.name)
    found = call("describe alarms", clients.cloudwatch.describe_alarms, AlarmNames=names)
    missing = sorted(set(names) - {a["AlarmName"] for a in found.get("MetricAlarms", [])})
    if missing:
        raise NotFound(
            f"rollback alarm(s) {', '.join(missing)} do not exist: the regional stack owns "
            f"them; deploy it with EndpointName={spec.name} first (deploy/README.md)"
        )
    return names


def ensure_model(
    clients: Clients,
    endpoint: str,
    record: PackageRecord,
    platform: Platform,
    with_store: bool = True,
) -> str:
    """The model of ``record``; the production one (``with_store``) gets the platform's
    feature store, the shadow one never (the regional template's ShadowModel)."""
    store = platform.store_environment() if with_store else {}
    name = model_name(endpoint, record.model_version, store)
    sm = clients.sagemaker
    if find(f"describe model {name}", sm.describe_model, ModelName=name) is None:
        request = model_request(name, endpoint, record.s3_uri, platform, with_store)
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


def ensure_scaling(clients: Clients, spec: EndpointSpec) -> str:
    """Register the scalable target and its policy once the endpoint is in service (an
    endpoint being created or updated refuses them); otherwise say when it will happen."""
    found = call(
        f"describe endpoint {spec.name}",
        clients.sagemaker.describe_endpoint,
        EndpointName=spec.name,
    )
    state = found["EndpointStatus"]
    if state != "InService":
        return f"pending: {spec.name} is {state}; `apply --wait` or a later apply registers it"
    aas = clients.autoscaling
    target = scalable_target_request(spec)
    call(f"register scalable target {target['ResourceId']}", aas.register_scalable_target, **target)
    policy = scaling_policy_request(spec)
    call(f"put scaling policy {policy['PolicyName']}", aas.put_scaling_policy, **policy)
    return "registered"


def apply(
    clients: Clients,
    spec: EndpointSpec,
    platform: Platform,
    record: PackageRecord,
    shadow: PackageRecord | None = None,
) -> dict[str, Any]:
    """The stack's alarms checked first (the update's rollback needs them), then models,
    endpoint, scaling."""
    for rec in (record, shadow):
        if rec is not None:
            check_uploaded(clients.s3, rec)
    check_subnets(clients.ec2, platform)
    alarms = check_alarms(clients, spec)
    production = ensure_model(clients, spec.name, record, platform)
    challenger = (
        ensure_model(clients, spec.name, shadow, platform, with_store=False) if shadow else None
    )
    result: dict[str, Any] = roll_out(clients, spec, platform, production, challenger)
    return {
        **result,
        "model": production,
        "shadow": challenger,
        "alarms": alarms,
        "scaling": ensure_scaling(clients, spec),
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
    models = [model_name(spec.name, record.model_version, platform.store_environment())]
    if shadow is not None:
        models.append(model_name(spec.name, shadow.model_version))
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
            f"rollback on {', '.join(rollback_alarm_names(spec.name))})"
        )
    check_alarms(clients, spec)
    return lines or [f"{spec.name}: no change"]
