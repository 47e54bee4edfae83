"""The two-region front door's DNS: Route 53 latency records with health checks.

Payment systems resolve one name; Route 53 answers with the nearest region whose health
check passes, so a failed region drops out of the answers. Each regional target is the
regional API Gateway custom domain the global stack outputs (``RegionalDomainName`` and
``RegionalHostedZoneId``): an alias record keeps the TLS name the callers ask for. Its
``/health`` route answers 200 while the region's API is up. Idempotent: health checks are
found by caller reference, records upserted. (The global stack makes the same records
with CloudFormation; this is for regions deployed without it.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from deploy.aws import call
from deploy.config import known_regions
from deploy.errors import SettingsError

HEALTH_PATH = "/health"


@dataclasses.dataclass(frozen=True)
class RegionalTarget:
    host: str  # the custom domain's regional name, d-xxxx.execute-api.<region>.amazonaws.com
    zone_id: str  # its Route 53 hosted zone (the API Gateway zone of that region)


def _health_check_config(host: str) -> dict[str, Any]:
    return {
        "Type": "HTTPS",
        "FullyQualifiedDomainName": host,
        "Port": 443,
        "ResourcePath": HEALTH_PATH,
        "RequestInterval": 10,
        "FailureThreshold": 3,
        "EnableSNI": True,
    }


def _ensure_health_check(route53: Any, reference: str, host: str) -> str:
    listed = call("list health checks", route53.list_health_checks)
    for check in listed.get("HealthChecks", []):
        if check["CallerReference"] == reference:
            return str(check["Id"])
    created = call(
        f"create health check {reference}",
        route53.create_health_check,
        CallerReference=reference,
        HealthCheckConfig=_health_check_config(host),
    )
    return str(created["HealthCheck"]["Id"])


def ensure_failover(
    route53: Any, zone_id: str, domain: str, targets: Mapping[str, RegionalTarget]
) -> dict[str, str]:
    """One health check and one latency record per region; returns region -> health check."""
    if len(targets) < 2:
        raise SettingsError(f"failover needs two regions or more, got {sorted(targets)}")
    unknown = sorted(set(targets) - set(known_regions()))
    if unknown:
        raise SettingsError(f"unknown region(s) {', '.join(unknown)}")
    checks = {
        region: _ensure_health_check(route53, f"{domain}-{region}", target.host)
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
                    "EvaluateTargetHealth": True,
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
