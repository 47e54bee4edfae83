"""``fraud deploy drill``: the probe function on moto's server (its drill switch is really
set and removed), Route 53's health metric and TestDNSAnswer through botocore's Stubber
(moto publishes no health check metrics and evaluates no health)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from deploy.aws import client
from deploy.config import AwsSettings
from deploy.drill import DRILL_SWITCH, DrillTarget, drill, failover_budget_s
from deploy.errors import WaitTimeout

TARGET = DrillTarget("fraud-drill-probe", "hc-region-a", "Z1", "score.fraud.example.com")


@pytest.fixture()
def probe_function(aws: AwsSettings) -> Any:
    iam, lam = client(aws, "iam"), client(aws, "lambda")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="fraud-drill-probe", AssumeRolePolicyDocument=json.dumps(trust))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("index.py", "def handler(event, context):\n    return {}\n")
    lam.create_function(
        FunctionName=TARGET.probe_function,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="index.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": {"ENDPOINT_NAME": "fraud-drill"}},
    )
    yield lam
    lam.delete_function(FunctionName=TARGET.probe_function)
    iam.delete_role(RoleName="fraud-drill-probe")


def _status(value: float | None) -> dict[str, Any]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    points = [] if value is None else [{"Timestamp": now, "Minimum": value}]
    return {"Label": "HealthCheckStatus", "Datapoints": points}


def _answer(*ips: str) -> dict[str, Any]:
    return {
        "Nameserver": "ns-1.awsdns-1.com",
        "RecordName": TARGET.domain,
        "RecordType": "A",
        "RecordData": list(ips),
        "ResponseCode": "NOERROR",
        "Protocol": "UDP",
    }


def _env(lam: Any) -> dict[str, str]:
    config = lam.get_function_configuration(FunctionName=TARGET.probe_function)
    return dict(config["Environment"]["Variables"])


def test_drill_fails_region_a_watches_dns_move_and_restores(
    aws: AwsSettings, probe_function: Any
) -> None:
    cloudwatch, route53 = client(aws, "cloudwatch"), client(aws, "route53")
    watch, dns = Stubber(cloudwatch), Stubber(route53)
    seen: list[dict[str, str]] = []
    metric = {
        "Namespace": "AWS/Route53",
        "MetricName": "HealthCheckStatus",
        "Dimensions": [{"Name": "HealthCheckId", "Value": TARGET.health_check_id}],
        "StartTime": ANY,
        "EndTime": ANY,
        "Period": 60,
        "Statistics": ["Minimum"],
    }
    for value in (1.0, None, 0.0, 0.0, 1.0):  # healthy, no data, unhealthy; then recovered
        watch.add_response("get_metric_statistics", _status(value), metric)
    dns.add_response("test_dns_answer", _answer("192.0.2.1"))  # region A
    dns.add_response("test_dns_answer", _answer("198.51.100.7"))  # region B
    dns.add_response("test_dns_answer", _answer("192.0.2.1"))
    with watch, dns:
        report = drill(
            probe_function,
            cloudwatch,
            route53,
            TARGET,
            interval_s=0.0,
            log=lambda _: seen.append(_env(probe_function)),
        )
    watch.assert_no_pending_responses()
    dns.assert_no_pending_responses()
    assert seen[1][DRILL_SWITCH] == "1"  # failing while it waited for the region to leave DNS
    assert DRILL_SWITCH not in _env(probe_function)  # and restored after
    assert _env(probe_function)["ENDPOINT_NAME"] == "fraud-drill"
    assert report["moved"] and report["budget_s"] == failover_budget_s()
    assert report["dns_during"] == ["198.51.100.7"]


def test_drill_restores_the_probe_when_dns_never_moves(
    aws: AwsSettings, probe_function: Any
) -> None:
    cloudwatch, route53 = client(aws, "cloudwatch"), client(aws, "route53")
    watch, dns = Stubber(cloudwatch), Stubber(route53)
    watch.add_response("get_metric_statistics", _status(1.0))  # still healthy: time is up
    dns.add_response("test_dns_answer", _answer("192.0.2.1"))
    with watch, dns, pytest.raises(WaitTimeout, match="not unhealthy after 0 s"):
        drill(probe_function, cloudwatch, route53, TARGET, 1.0, budget_s=0, log=lambda _: None)
    watch.assert_no_pending_responses()
    assert DRILL_SWITCH not in _env(probe_function)
