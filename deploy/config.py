"""Validated deploy settings, checked in full before any AWS call.

Two frozen objects: :class:`AwsSettings` (where and as whom: region, credentials, an optional
endpoint URL for a local AWS) built from the environment by :meth:`AwsSettings.from_env`, the
only place the deploy package reads it; and :class:`EndpointSpec` (what to run: instance
type, count, canary size, baking time, scaling) built from command-line flags. Constructing
either raises :class:`~deploy.errors.SettingsError` naming the bad value, so a refused
deployment never reaches AWS.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import botocore.session

from deploy.errors import CredentialsMissing, SettingsError

# T4 and V100 GPUs, and the CPU families for cost-sensitive variants
INSTANCE_TYPE = re.compile(r"^ml\.(g4dn|p3|c5|c6i)\.(\d*x?large|metal)$")
MAX_CANARY_PERCENT = 50
MAX_WAIT_S = 3600  # WaitIntervalInSeconds and TerminationWaitInSeconds
TRAFFIC = ("CANARY", "LINEAR", "ALL_AT_ONCE")
MIN_INSTANCES = 2  # SageMaker spreads >= 2 instances over AZs; the SLA needs them
TERMINATION_WAIT_S = 300  # the old fleet stays this long after the last shift
PROVISIONING_S = 1_800  # allowance for the new fleet to start and pass its pings
MARGIN_S = 300
MAX_EXECUTION_S = 28_800  # MaximumExecutionTimeoutInSeconds range 600-28,800


def deployment_timeout_s(traffic: str, step_percent: int, baking_s: int) -> int:
    """MaximumExecutionTimeoutInSeconds for a blue/green update: provisioning, one wait per
    traffic step plus the final baking, the termination wait and a margin."""
    shifts = {"ALL_AT_ONCE": 1, "CANARY": 2}.get(traffic, -(-100 // max(step_percent, 1)))
    return max(600, PROVISIONING_S + shifts * baking_s + TERMINATION_WAIT_S + MARGIN_S)


def known_regions() -> list[str]:
    """Regions botocore's bundled endpoint data lists for SageMaker (no network call)."""
    return botocore.session.get_session().get_available_regions("sagemaker")


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    profile: str | None = None
    endpoint_url: str | None = None  # a local AWS (moto) in tests; None on real AWS

    def __post_init__(self) -> None:
        if self.region not in known_regions():
            raise SettingsError(
                f"unknown region {self.region!r}: SageMaker is not offered there "
                "(set AWS_REGION or --region to one of botocore's SageMaker regions)"
            )
        if self.profile is None and not (self.access_key_id and self.secret_access_key):
            raise CredentialsMissing(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN for temporary ones) or AWS_PROFILE"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str], region: str | None = None) -> AwsSettings:
        chosen = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not chosen:
            raise SettingsError("no region: pass --region or set AWS_REGION")
        profile = env.get("AWS_PROFILE") or None
        has_keys = bool(env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
        if profile is not None or not has_keys:
            profiles = botocore.session.get_session().available_profiles
            if profile is None and "default" in profiles:
                profile = "default"  # ~/.aws/credentials without AWS_PROFILE
            elif profile is not None and profile not in profiles:
                raise CredentialsMissing(
                    f"AWS_PROFILE={profile!r} is not in the AWS config files "
                    f"(known: {', '.join(profiles) or 'none'})"
                )
        return cls(
            region=chosen,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            profile=profile,
            endpoint_url=env.get("FRAUD_AWS_ENDPOINT_URL") or None,
        )


@dataclasses.dataclass(frozen=True)
class EndpointSpec:
    """One endpoint's shape and rollout guardrails."""

    name: str
    instance_type: str = "ml.g4dn.xlarge"
    instance_count: int = MIN_INSTANCES
    max_instances: int = 6
    target_invocations_per_instance: float = 6_000.0  # per minute
    canary_percent: int = 10
    baking_s: int = 600
    capture_percent: int = 100
    traffic: str = "CANARY"  # blue/green traffic shifting: CANARY, LINEAR or ALL_AT_ONCE

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", self.name):
            raise SettingsError(
                f"endpoint name {self.name!r} must be 1-63 letters, digits or hyphens"
            )
        if not INSTANCE_TYPE.match(self.instance_type):
            raise SettingsError(
                f"instance type {self.instance_type!r} is not allowed: expected "
                "ml.g4dn.*, ml.p3.*, ml.c5.* or ml.c6i.*"
            )
        if self.instance_count < MIN_INSTANCES:
            raise SettingsError(
                f"instance count {self.instance_count} is below {MIN_INSTANCES}: one "
                "instance is not spread over Availability Zones"
            )
        if self.max_instances < self.instance_count:
            raise SettingsError(
                f"max instances {self.max_instances} is below the instance count "
                f"{self.instance_count}"
            )
        if not 1 <= self.canary_percent <= MAX_CANARY_PERCENT:
            raise SettingsError(
                f"canary size {self.canary_percent} % is outside 1-{MAX_CANARY_PERCENT} % "
                "(SageMaker's CanarySize limit)"
            )
        if self.traffic not in TRAFFIC:
            raise SettingsError(f"traffic shifting {self.traffic!r} is not one of {TRAFFIC}")
        if self.traffic == "LINEAR" and self.canary_percent < 10:
            raise SettingsError(f"linear step {self.canary_percent} % is below 10 %")
        if not 0 <= self.baking_s <= MAX_WAIT_S:
            raise SettingsError(f"baking time {self.baking_s} s is outside 0-{MAX_WAIT_S} s")
        timeout_s = deployment_timeout_s(self.traffic, self.canary_percent, self.baking_s)
        if timeout_s > MAX_EXECUTION_S:
            raise SettingsError(
                f"{self.traffic} in {self.canary_percent} % steps with {self.baking_s} s of "
                f"baking needs {timeout_s} s, above SageMaker's {MAX_EXECUTION_S} s limit: "
                "shorten the baking or use larger steps"
            )
        if not 0 <= self.capture_percent <= 100:
            raise SettingsError(f"capture percentage {self.capture_percent} is outside 0-100")
        if self.target_invocations_per_instance <= 0:
            raise SettingsError("target invocations per instance must be positive")
