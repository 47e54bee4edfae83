"""The two-region front door's DNS: Route 53 latency records with health checks.

Payment systems resolve one name; Route 53 answers with the nearest region whose health
check passes, so a failed region drops out of the answers. Each regional target is the
regional API Gateway custom domain the global stack outputs (``RegionalDomainName`` and
``RegionalHostedZoneId``): an alias record keeps the TLS name the callers ask for.

A region's health is the one the global stack builds: one health check per alarm of the
regional stack (probe failed, probe slow, endpoint 5xx), the HTTPS check of the front door's
``/health`` (a constant: it proves DNS, TLS and API Gateway only), and a calculated check that
needs all of them, which the record follows. Idempotent: health checks are found by caller
reference, records upserted. (The global stack makes the same with CloudFormation; this is
for regions deployed without it.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from deploy.aws import call
from deploy.config import known_regions
from deploy.errors import SettingsError

HEALTH_PATH = "/health"
# the regional stack's alarms a region's health follows, with the status Route 53 gives a
# check whose alarm has no data: a probe that does not run is a failing probe
HEALTH_ALARMS = {
    "probe-failed": "Unhealthy",
    "probe-latency": "LastKnownStatus",
    "5xx": "LastKnownStatus",
}


@dataclasses.dataclass(frozen=True)
class RegionalTarget:
    host: str  # the custom domain's regional name, d-xxxx.execute-api.<region>.amazonaws.com
    zone_id: str  # its Route 53 hosted zone (the API Gateway zone of that region)
    endpoint: str = "fraud-score"  # the regional stack's EndpointName (names its alarms)


def health_check_configs(region: str, target: RegionalTarget) -> dict[str, dict[str, Any]]:
    """The child checks of one region, by name: one per alarm and the front door's."""
    configs: dict[str, dict[str, Any]] = {
        suffix: {
            "Type": "CLOUDWATCH_METRIC",
            "AlarmIdentifier": {"Region": region, "Name": f"{target.endpoint}-{suffix}"},
            "InsufficientDataHealthStatus": status,
        }
        for suffix, status in HEALTH_ALARMS.items()
    }
    configs["front-door"] = {
        "Type": "HTTPS",
        "FullyQualifiedDomainName": target.host,
        "Port": 443,
        "ResourcePath": HEALTH_PATH,
        "RequestInterval": 10,
        "FailureThreshold": 3,
        "EnableSNI": True,
    }
    return configs


def _ensure_health_check(route53: Any, reference: str, config: dict[str, Any]) -> str:
    listed = call("list health checks", route53.list_health_checks)
    for check in listed.get("HealthChecks", []):
        if check["CallerReference"] == reference:
            return str(check["Id"])
    created = call(
        f"create health check {reference}",
        route53.create_health_check,
        CallerReference=reference,
        HealthCheckConfig=config,
    )
    return str(created["HealthCheck"]["Id"])


def _ensure_region_health(route53: Any, domain: str, region: str, target: RegionalTarget) -> str:
    children = [
        _ensure_health_check(route53, f"{domain}-{region}-{name}", config)
        for name, config in health_check_configs(region, target).items()
    ]
    calculated = {
        "Type": "CALCULATED",
        "ChildHealthChecks": children,
        "HealthThreshold": len(children),
    }
    return _ensure_health_check(route53, f"{domain}-{region}", calculated)


def ensure_failover(
    route53: Any, zone_id: str, domain: str, targets: Mapping[str, RegionalTarget]
) -> dict[str, str]:
    """Per region, the health checks and the latency record following their calculated check;
    returns region -> calculated health check."""
    if len(targets) < 2:
        raise SettingsError(f"failover needs two regions or more, got {sorted(targets)}")
    unknown = sorted(set(targets) - set(known_regions()))
    if unknown:
        raise SettingsError(f"unknown region(s) {', '.join(unknown)}")
    checks = {
        region: _ensure_region_health(route53, domain, region, target)
        for region, target in sorted(targets.items())
    }
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": domain,
                "Type": "A",
                "SetIdentifier": region,
                "Region": region,
                "AliasTarget": {
                    "HostedZoneId": target.zone_id,
                    "DNSName": target.host,
                    "EvaluateTargetHealth": False,  # the calculated check decides
                },
                "HealthCheckId": checks[region],
            },
        }
        for region, target in sorted(targets.items())
    ]
    call(
        f"upsert latency records for {domain}",
        route53.change_resource_record_sets,
        HostedZoneId=zone_id,
        ChangeBatch={"Comment": "fraud front door", "Changes": changes},
    )
    return checks
