"""Endpoint rollouts: create or update with guardrails, read the state, roll back, promote.

Invariants:
- an update always carries the blue/green deployment config with the rollback alarms, keeps
  the autoscaled instance count (RetainAllVariantProperties) unless the instance type
  changes, and an instance-type change deregisters the scalable target first (Application
  Auto Scaling would otherwise keep scaling the old fleet's variant during the update);
- an endpoint the regional stack created is changed through the stack, never here;
- the endpoint's tags record the config we asked for and the one it replaced, so ``status``
  can tell a rollback SageMaker performed itself (endpoint back on the previous config) from
  a finished deployment, and ``rollback`` never rolls back a second time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from deploy.aws import Clients, call, find, wait_until
from deploy.config import EndpointSpec
from deploy.errors import AlarmTripped, Conflict, DeployError, NotFound
from deploy.requests import (
    PRODUCTION,
    SCALABLE_DIMENSION,
    SHADOW,
    Platform,
    deployment_config,
    endpoint_config_request,
    scaling_resource_id,
    update_request,
)

REQUESTED, PREVIOUS = "fraud:requested-config", "fraud:previous-config"
STACK_TAG = "aws:cloudformation:stack-name"
IN_PROGRESS = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}
SETTLED = {"InService", "Failed", "UpdateRollbackFailed", "OutOfService"}


@dataclasses.dataclass(frozen=True)
class EndpointState:
    name: str
    status: str
    config: str
    requested: str | None
    previous: str | None
    failure_reason: str | None

    @property
    def rolled_back_by_sagemaker(self) -> bool:
        """SageMaker put the endpoint back on the previous config (an alarm tripped)."""
        return (
            self.status == "InService"
            and self.requested is not None
            and self.config != self.requested
            and self.config == self.previous
        )

    def describe(self) -> str:
        if self.rolled_back_by_sagemaker:
            why = f": {self.failure_reason}" if self.failure_reason else ""
            return (
                f"{self.name}: rolled back by SageMaker to {self.config} "
                f"(deployment of {self.requested} stopped{why})"
            )
        if self.status == "UpdateRollbackFailed":
            return f"{self.name}: SageMaker's rollback failed ({self.failure_reason}); act by hand"
        return f"{self.name}: {self.status} on {self.config}" + (
            f" ({self.failure_reason})" if self.failure_reason else ""
        )


def status(clients: Clients, endpoint: str) -> EndpointState:
    sm = clients.sagemaker
    desc = call(f"describe endpoint {endpoint}", sm.describe_endpoint, EndpointName=endpoint)
    tags = call(f"read tags of {endpoint}", sm.list_tags, ResourceArn=desc["EndpointArn"])
    by_key = {t["Key"]: t["Value"] for t in tags.get("Tags", [])}
    return EndpointState(
        name=endpoint,
        status=desc["EndpointStatus"],
        config=desc["EndpointConfigName"],
        requested=by_key.get(REQUESTED),
        previous=by_key.get(PREVIOUS),
        failure_reason=desc.get("FailureReason"),
    )


def _ensure_config(sm: Any, request: dict[str, Any]) -> str:
    name: str = request["EndpointConfigName"]
    action = f"endpoint config {name}"
    if find(action, sm.describe_endpoint_config, EndpointConfigName=name) is None:
        call(f"create {action}", sm.create_endpoint_config, **request)
    return name


def _instance_type(sm: Any, config: str) -> str | None:
    desc = call(
        f"describe endpoint config {config}", sm.describe_endpoint_config, EndpointConfigName=config
    )
    types = [
        v["InstanceType"] for v in desc["ProductionVariants"] if v["VariantName"] == PRODUCTION
    ]
    return types[0] if types else None


def _check_not_stack_owned(sm: Any, current: dict[str, Any]) -> None:
    tags = call(
        f"read tags of {current['EndpointName']}", sm.list_tags, ResourceArn=current["EndpointArn"]
    )
    stack = {t["Key"]: t["Value"] for t in tags.get("Tags", [])}.get(STACK_TAG)
    if stack is not None:
        raise Conflict(
            f"{current['EndpointName']} belongs to CloudFormation stack {stack}: change it "
            "through the stack (ModelDataKey, InstanceType), not with apply"
        )


def _deregister_scaling(clients: Clients, endpoint: str) -> None:
    resource = scaling_resource_id(endpoint)
    find(
        f"deregister scalable target {resource}",
        clients.autoscaling.deregister_scalable_target,
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
    )


def _switch(
    clients: Clients,
    current: dict[str, Any],
    config: str,
    deployment: dict[str, Any],
    spec: EndpointSpec,
) -> None:
    sm, endpoint = clients.sagemaker, current["EndpointName"]
    if current["EndpointStatus"] in IN_PROGRESS:
        raise Conflict(f"{endpoint} is {current['EndpointStatus']}: wait for it to settle")
    was = _instance_type(sm, current["EndpointConfigName"])
    type_changes = was is not None and was != _instance_type(sm, config)
    if type_changes:
        _deregister_scaling(clients, endpoint)
    request = update_request(spec, config, deployment, type_changes)
    call(f"update endpoint {endpoint}", sm.update_endpoint, **request)
    tags = [
        {"Key": PREVIOUS, "Value": current["EndpointConfigName"]},
        {"Key": REQUESTED, "Value": config},
    ]
    call(f"tag {endpoint}", sm.add_tags, ResourceArn=current["EndpointArn"], Tags=tags)


def roll_out(
    clients: Clients,
    spec: EndpointSpec,
    platform: Platform,
    production_model: str,
    shadow_model: str | None,
) -> dict[str, str]:
    """Create the endpoint, or move it to a new config through the guardrailed update."""
    sm = clients.sagemaker
    config = _ensure_config(
        sm, endpoint_config_request(spec, platform, production_model, shadow_model)
    )
    current = find(f"describe endpoint {spec.name}", sm.describe_endpoint, EndpointName=spec.name)
    if current is None:
        call(
            f"create endpoint {spec.name}",
            sm.create_endpoint,
            EndpointName=spec.name,
            EndpointConfigName=config,
            Tags=[{"Key": REQUESTED, "Value": config}],
        )
        return {"endpoint": spec.name, "action": "created", "config": config}
    _check_not_stack_owned(sm, current)
    if current["EndpointConfigName"] == config:
        return {"endpoint": spec.name, "action": "unchanged", "config": config}
    _switch(clients, current, config, deployment_config(spec), spec)
    return {
        "endpoint": spec.name,
        "action": "updated",
        "config": config,
        "previous": current["EndpointConfigName"],
        "traffic": spec.traffic,
    }


def wait(clients: Clients, endpoint: str, timeout_s: float, interval_s: float = 30.0) -> str:
    """Wait for the endpoint to settle; raise AlarmTripped when SageMaker rolled back."""

    def poll() -> str:
        return str(status(clients, endpoint).status)

    wait_until(f"endpoint {endpoint}", poll, SETTLED, timeout_s, interval_s)
    state = status(clients, endpoint)
    if state.rolled_back_by_sagemaker:
        raise AlarmTripped(state.describe())
    if state.status != "InService":
        raise DeployError(state.describe())
    return state.describe()


def rollback(clients: Clients, spec: EndpointSpec) -> str:
    """Return explicitly to the previous config, unless SageMaker already did."""
    state = status(clients, spec.name)
    if state.rolled_back_by_sagemaker:
        return f"{state.describe()}; not rolling back again"
    if state.status in IN_PROGRESS:
        raise Conflict(f"{spec.name} is {state.status}: wait for it to settle")
    if state.previous is None or state.previous == state.config:
        raise NotFound(f"{spec.name}: no previous endpoint config recorded to return to")
    current = call(
        f"describe endpoint {spec.name}",
        clients.sagemaker.describe_endpoint,
        EndpointName=spec.name,
    )
    _switch(clients, current, state.previous, deployment_config(spec, "ALL_AT_ONCE"), spec)
    return f"{spec.name}: rolling back from {state.config} to {state.previous}"


def promote(clients: Clients, spec: EndpointSpec, platform: Platform) -> dict[str, str]:
    """Make the shadow variant's model the production model, through a guardrailed update."""
    sm = clients.sagemaker
    desc = call(f"describe endpoint {spec.name}", sm.describe_endpoint, EndpointName=spec.name)
    config = call(
        f"describe endpoint config {desc['EndpointConfigName']}",
        sm.describe_endpoint_config,
        EndpointConfigName=desc["EndpointConfigName"],
    )
    shadows = [v for v in config.get("ShadowProductionVariants", []) if v["VariantName"] == SHADOW]
    if not shadows:
        raise NotFound(f"{spec.name}: config {desc['EndpointConfigName']} has no shadow variant")
    return roll_out(clients, spec, platform, shadows[0]["ModelName"], None)
