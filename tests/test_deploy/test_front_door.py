"""The two-region front door: Route 53 latency records with health checks, on moto."""

from __future__ import annotations

import pytest

from deploy.aws import client
from deploy.config import AwsSettings
from deploy.errors import SettingsError
from deploy.front_door import HEALTH_PATH, RegionalTarget, ensure_failover

TARGETS = {
    "eu-west-1": RegionalTarget("d-abc123.execute-api.eu-west-1.amazonaws.com", "ZLY8HYME6SFDD"),
    "us-east-1": RegionalTarget("d-def456.execute-api.us-east-1.amazonaws.com", "Z1UJRXOUMOOFQ8"),
}


def test_two_region_deploy_creates_failover_records_and_health_checks(aws: AwsSettings) -> None:
    route53 = client(aws, "route53")
    zone = route53.create_hosted_zone(Name="fraud.example.com", CallerReference="zone-1")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    domain = "score.fraud.example.com"

    checks = ensure_failover(route53, zone_id, domain, TARGETS)
    assert ensure_failover(route53, zone_id, domain, TARGETS) == checks  # idempotent

    listed = {c["Id"]: c for c in route53.list_health_checks()["HealthChecks"]}
    for region, target in TARGETS.items():
        config = listed[checks[region]]["HealthCheckConfig"]
        assert config["FullyQualifiedDomainName"] == target.host
        assert config["ResourcePath"] == HEALTH_PATH and config["Type"] == "HTTPS"
    assert len([c for c in listed.values() if c["CallerReference"].startswith(domain)]) == 2

    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    latency = {r["SetIdentifier"]: r for r in records if r["Name"].rstrip(".") == domain}
    assert set(latency) == set(TARGETS)
    for region, record in latency.items():
        assert record["Region"] == region
        assert record["HealthCheckId"] == checks[region]
        alias = record["AliasTarget"]
        assert alias["DNSName"].rstrip(".") == TARGETS[region].host
        assert alias["HostedZoneId"] == TARGETS[region].zone_id and alias["EvaluateTargetHealth"]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({"eu-west-1": RegionalTarget("a", "Z")}, "two regions or more"),
        ({"eu-west-1": RegionalTarget("a", "Z"), "mars-1": RegionalTarget("b", "Z")}, "unknown"),
    ],
)
def test_failover_refuses_one_region_or_unknown_ones(targets: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ensure_failover(None, "Z1", "score.example.com", targets)
