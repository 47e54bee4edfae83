"""The two-region front door: Route 53 latency records following calculated health checks
(the regional alarms and the front door's answer), on moto. moto keeps neither a check's
alarm nor its children: the requests sent are read back from botocore's event hook."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.aws import client
from deploy.config import AwsSettings
from deploy.errors import SettingsError
from deploy.front_door import HEALTH_PATH, RegionalTarget, ensure_failover, health_check_configs
from tests.test_deploy.stack import load, parameters, resolve

TARGETS = {
    "eu-west-1": RegionalTarget("d-abc123.execute-api.eu-west-1.amazonaws.com", "ZLY8HYME6SFDD"),
    "us-east-1": RegionalTarget("d-def456.execute-api.us-east-1.amazonaws.com", "Z1UJRXOUMOOFQ8"),
}


def test_two_region_deploy_creates_failover_records_and_health_checks(aws: AwsSettings) -> None:
    route53 = client(aws, "route53")
    zone = route53.create_hosted_zone(Name="fraud.example.com", CallerReference="zone-1")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    domain = "score.fraud.example.com"

    sent: list[dict[str, Any]] = []
    route53.meta.events.register(
        "provide-client-params.route53.CreateHealthCheck", lambda params, **_: sent.append(params)
    )
    checks = ensure_failover(route53, zone_id, domain, TARGETS)
    assert ensure_failover(route53, zone_id, domain, TARGETS) == checks  # idempotent
    assert len(sent) == 2 * 5  # per region: 3 alarm checks, the front door's, the calculated

    by_ref = {p["CallerReference"]: p["HealthCheckConfig"] for p in sent}
    stack_alarms = {
        resolve(r["Properties"]["AlarmName"], parameters(load("regional.yaml")))
        for r in load("regional.yaml")["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    for region, target in TARGETS.items():
        calculated = by_ref[f"{domain}-{region}"]
        assert calculated["Type"] == "CALCULATED"
        assert calculated["HealthThreshold"] == len(calculated["ChildHealthChecks"]) == 4
        alarms = {
            c["AlarmIdentifier"]["Name"]
            for ref, c in by_ref.items()
            if ref.startswith(f"{domain}-{region}-") and c["Type"] == "CLOUDWATCH_METRIC"
        }
        assert alarms <= stack_alarms and len(alarms) == 3  # the regional stack's alarms
        door = by_ref[f"{domain}-{region}-front-door"]
        assert door["FullyQualifiedDomainName"] == target.host
        assert door["ResourcePath"] == HEALTH_PATH and door["Type"] == "HTTPS"

    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    latency = {r["SetIdentifier"]: r for r in records if r["Name"].rstrip(".") == domain}
    assert set(latency) == set(TARGETS)
    for region, record in latency.items():
        assert record["Region"] == region
        assert record["HealthCheckId"] == checks[region]
        alias = record["AliasTarget"]
        assert alias["DNSName"].rstrip(".") == TARGETS[region].host
        assert alias["HostedZoneId"] == TARGETS[region].zone_id


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


def test_the_command_builds_the_same_region_health_as_the_global_stack() -> None:
    template = load("global.yaml")
    names = parameters(template)
    from_stack = [
        resolve(r["Properties"]["HealthCheckConfig"], names)
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Route53::HealthCheck"
        and r["Properties"]["HealthCheckConfig"]["Type"] == "CLOUDWATCH_METRIC"
    ]
    target = RegionalTarget("d-abc.execute-api.eu-west-1.amazonaws.com", "Z", names["EndpointName"])
    from_command = [
        c for c in health_check_configs("eu-west-1", target).values() if c["Type"] != "HTTPS"
    ]
    key = lambda c: c["AlarmIdentifier"]["Name"]  # noqa: E731
    assert sorted(from_stack, key=key) == sorted(from_command, key=key)
