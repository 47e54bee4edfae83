"""``fraud deploy drill``: prove on a real account that a failed region leaves DNS, then
restore it.

The drill sets ``PROBE_DRILL_FAIL=1`` on region A's probe function, so every probe run
reports a failure while the endpoint itself keeps serving; it then watches the region's
calculated Route 53 health check turn unhealthy (Route 53 publishes ``HealthCheckStatus`` for
every check, calculated ones included, in us-east-1) and records what the shared name
resolves to, removes the switch (always, even when interrupted or timed out) and waits for
the check to recover. Between the two the stack's probe function differs from its template
(CloudFormation drift); the restore puts it back.

:func:`failover_budget_s` is how long a failed region takes to leave DNS with the stacks'
settings; the drill waits twice that before calling the failover late.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from deploy.aws import call
from deploy.errors import WaitTimeout

DRILL_SWITCH = "PROBE_DRILL_FAIL"
HEALTH_METRICS_REGION = "us-east-1"  # Route 53 health check metrics live there only


@dataclasses.dataclass(frozen=True)
class FailoverSettings:
    """The stacks' settings that decide how fast a failed region leaves DNS (their defaults
    are the templates' values; a test checks they agree)."""

    probe_interval_s: int = 60  # regional.yaml ProbeSchedule rate(1 minute)
    alarm_period_s: int = 60  # ProbeFailedAlarm Period
    datapoints_to_alarm: int = 2  # ProbeFailedAlarm DatapointsToAlarm
    alarm_evaluation_lag_s: int = 60  # CloudWatch evaluates a 60 s period after it closes
    route53_alarm_lag_s: int = 60  # estimate: Route 53 reading the alarm's new state
    dns_ttl_s: int = 60  # an alias to an API Gateway regional domain answers with TTL 60


def failover_budget_s(settings: FailoverSettings | None = None) -> int:
    """Worst case from the endpoint failing to resolvers no longer answering with it."""
    s = settings or FailoverSettings()
    return (
        s.probe_interval_s
        + s.datapoints_to_alarm * s.alarm_period_s
        + s.alarm_evaluation_lag_s
        + s.route53_alarm_lag_s
        + s.dns_ttl_s
    )


@dataclasses.dataclass(frozen=True)
class DrillTarget:
    probe_function: str  # the regional stack's ProbeFunctionName output
    health_check_id: str  # the global stack's HealthCheckId output (the calculated check)
    zone_id: str
    domain: str
    client_ip: str | None = None  # a resolver subnet near region A, for TestDNSAnswer


def set_switch(lam: Any, function: str, on: bool) -> None:
    config = call(f"read {function}", lam.get_function_configuration, FunctionName=function)
    variables = dict(config.get("Environment", {}).get("Variables", {}))
    if on:
        variables[DRILL_SWITCH] = "1"
    else:
        variables.pop(DRILL_SWITCH, None)
    call(
        f"{'set' if on else 'remove'} {DRILL_SWITCH} on {function}",
        lam.update_function_configuration,
        FunctionName=function,
        Environment={"Variables": variables},
    )


def healthy(cloudwatch: Any, health_check_id: str) -> bool | None:
    """The check's last minute as Route 53 reports it: True, False, or None (no data yet)."""
    now = dt.datetime.now(dt.UTC)
    stats = call(
        f"read HealthCheckStatus of {health_check_id}",
        cloudwatch.get_metric_statistics,
        Namespace="AWS/Route53",
        MetricName="HealthCheckStatus",
        Dimensions=[{"Name": "HealthCheckId", "Value": health_check_id}],
        StartTime=now - dt.timedelta(minutes=3),
        EndTime=now,
        Period=60,
        Statistics=["Minimum"],
    )
    points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return None if not points else points[-1]["Minimum"] >= 1


def dns_answer(route53: Any, target: DrillTarget) -> list[str]:
    extra = {"EDNS0ClientSubnetIP": target.client_ip} if target.client_ip else {}
    answer = call(
        f"test DNS answer for {target.domain}",
        route53.test_dns_answer,
        HostedZoneId=target.zone_id,
        RecordName=target.domain,
        RecordType="A",
        **extra,
    )
    return sorted(answer.get("RecordData", []))


def _wait_for(
    want: bool, cloudwatch: Any, target: DrillTarget, timeout_s: float, interval_s: float
) -> float:
    started = time.monotonic()
    while True:
        if healthy(cloudwatch, target.health_check_id) is want:
            return time.monotonic() - started
        if time.monotonic() - started + interval_s > timeout_s:
            state = "healthy" if want else "unhealthy"
            raise WaitTimeout(
                f"health check {target.health_check_id} not {state} after {timeout_s:.0f} s"
            )
        time.sleep(interval_s)


def drill(
    lam: Any,
    cloudwatch: Any,
    route53: Any,
    target: DrillTarget,
    interval_s: float = 20.0,
    budget_s: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fail region A's probe, time its exit from DNS, restore it, time its return."""
    budget = budget_s if budget_s is not None else failover_budget_s()
    report: dict[str, Any] = {"budget_s": budget, "dns_before": dns_answer(route53, target)}
    log(f"failing {target.probe_function}; DNS should move within {budget} s")
    set_switch(lam, target.probe_function, on=True)
    try:
        report["unhealthy_after_s"] = round(
            _wait_for(False, cloudwatch, target, 2 * budget, interval_s)
        )
        report["dns_during"] = dns_answer(route53, target)
    finally:
        log(f"restoring {target.probe_function}")
        set_switch(lam, target.probe_function, on=False)
    report["healthy_again_after_s"] = round(
        _wait_for(True, cloudwatch, target, 2 * budget, interval_s)
    )
    report["dns_after"] = dns_answer(route53, target)
    report["moved"] = report["dns_during"] != report["dns_before"]
    return report
