"""Health that reflects the endpoint: probe -> alarm -> Route 53 health check -> DNS record,
followed through both templates, and the probe itself run against moto's server (the metric
it publishes is the one the alarm reads). moto evaluates neither alarms nor health checks:
the test reads the datapoints the alarm would read and compares them with its threshold."""

from __future__ import annotations

import json
import operator
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy import probe
from deploy.aws import Clients
from deploy.config import AwsSettings
from deploy.drill import FailoverSettings, failover_budget_s
from tests.test_deploy.conftest import ACCOUNT, REGION
from tests.test_deploy.stack import load, parameters, put_stack_alarms, resolve

STANDARD = {"Average", "Minimum", "Maximum", "Sum", "SampleCount"}
ROOT = Path(__file__).resolve().parents[2]


def _alarms(template: dict[str, Any], names: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            props = resolve(dict(resource["Properties"]), names)
            out[props["AlarmName"]] = props
    return out


def test_probe_alarm_health_check_and_record_are_wired_through_both_templates() -> None:
    regional, front_door = load("regional.yaml"), load("global.yaml")
    names, front_names = parameters(regional), parameters(front_door)
    assert names["EndpointName"] == front_names["EndpointName"]
    res = regional["Resources"]

    # probe: the schedule runs the function every minute; it scores this region's endpoint
    schedule = res["ProbeSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["Probe", "Arn"]}
    assert res["ProbePermission"]["Properties"]["SourceArn"] == {
        "Fn::GetAtt": ["ProbeSchedule", "Arn"]
    }
    function = res["Probe"]["Properties"]
    assert function["Code"]["ZipFile"] == (ROOT / "deploy" / "probe.py").read_text()
    env = resolve(function["Environment"]["Variables"], names)
    assert env["ENDPOINT_NAME"] == names["EndpointName"]

    # alarms: two on the probe's own metrics, one on the endpoint's 5xx
    alarms = _alarms(regional, names)
    dims = [{"Name": "EndpointName", "Value": names["EndpointName"]}]
    probe_alarms = {n: a for n, a in alarms.items() if a["Namespace"] == probe.NAMESPACE}
    assert {a["MetricName"] for a in probe_alarms.values()} == {"ProbeSuccess", "ProbeLatency"}
    assert all(a["Dimensions"] == dims for a in probe_alarms.values())
    failed = next(a for a in probe_alarms.values() if a["MetricName"] == "ProbeSuccess")
    assert failed["TreatMissingData"] == "breaching"  # a probe that did not run is a failure

    # health checks: each CLOUDWATCH_METRIC check follows one of those alarms, in this region
    g = front_door["Resources"]
    metric_checks = {
        n: resolve(r["Properties"]["HealthCheckConfig"], front_names)
        for n, r in g.items()
        if r["Type"] == "AWS::Route53::HealthCheck"
        and r["Properties"]["HealthCheckConfig"]["Type"] == "CLOUDWATCH_METRIC"
    }
    followed = {c["AlarmIdentifier"]["Name"] for c in metric_checks.values()}
    assert followed == set(probe_alarms) | {f"{names['EndpointName']}-5xx"}
    assert {c["AlarmIdentifier"]["Region"] for c in metric_checks.values()} == {REGION}
    for name in followed:  # Route 53 refuses extended statistics and high resolution
        assert alarms[name]["Statistic"] in STANDARD and "ExtendedStatistic" not in alarms[name]
        assert alarms[name]["Period"] >= 60
    unhealthy_without_data = {
        c["AlarmIdentifier"]["Name"]
        for c in metric_checks.values()
        if c["InsufficientDataHealthStatus"] == "Unhealthy"
    }
    assert unhealthy_without_data == {failed["AlarmName"]}

    # the calculated check needs every child, the front door's own HTTPS check among them
    calculated = g["RegionHealth"]["Properties"]["HealthCheckConfig"]
    children = {c["Ref"] for c in calculated["ChildHealthChecks"]}
    assert children == set(metric_checks) | {"FrontDoorCheck"}
    assert calculated["HealthThreshold"] == len(children)
    assert g["FrontDoorCheck"]["Properties"]["HealthCheckConfig"]["ResourcePath"] == "/health"

    # DNS: the shared latency record of this region follows the calculated check
    record = g["LatencyRecord"]["Properties"]
    assert record["HealthCheckId"] == {"Ref": "RegionHealth"}
    assert record["Region"] == {"Ref": "AWS::Region"}


def test_failover_budget_uses_the_templates_settings() -> None:
    res = load("regional.yaml")["Resources"]
    failed = res["ProbeFailedAlarm"]["Properties"]
    settings = FailoverSettings()
    assert res["ProbeSchedule"]["Properties"]["ScheduleExpression"] == (
        f"rate({settings.probe_interval_s // 60} minute)"
    )
    assert failed["Period"] == settings.alarm_period_s
    assert failed["DatapointsToAlarm"] == settings.datapoints_to_alarm
    budget = failover_budget_s(settings)
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert f"{budget} s" in readme  # the README states the figure these settings give


@pytest.fixture()
def probe_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return {"ENDPOINT_NAME": "fraud-probed", "PROBE_AWS_ENDPOINT_URL": moto_url}


def _queue_answers(moto_url: str, *bodies: str) -> None:
    """What moto's SageMaker runtime answers next (its documented test API)."""
    results = {"account_id": ACCOUNT, "region": REGION}
    results["results"] = [  # type: ignore[assignment]
        {"Body": b, "ContentType": "application/json", "InvokedProductionVariant": "primary"}
        for b in bodies
    ]
    request = urllib.request.Request(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
        data=json.dumps(results).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def _points(clients: Clients, alarm: dict[str, Any]) -> list[float]:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    stats = clients.cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm["Dimensions"],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=alarm["Period"],
        Statistics=[alarm["Statistic"]],
    )
    return [p[alarm["Statistic"]] for p in stats["Datapoints"]]


def test_the_probe_publishes_what_the_alarm_reads_and_a_failure_breaches_it(
    aws: AwsSettings, moto_url: str, probe_env: dict[str, str]
) -> None:
    clients = Clients.connect(aws)
    alarms = {
        a["MetricName"]: a
        for a in put_stack_alarms(clients.cloudwatch, clients.sns, "fraud-probed")
    }
    success = alarms["ProbeSuccess"]
    compare = {"LessThanThreshold": operator.lt, "GreaterThanThreshold": operator.gt}
    breaches = compare[success["ComparisonOperator"]]

    _queue_answers(moto_url, json.dumps({"predictions": [{"score": 0.1, "decision": "approve"}]}))
    assert probe.handler({}, None, probe_env)["ok"] is True
    assert [breaches(v, success["Threshold"]) for v in _points(clients, success)] == [False]

    _queue_answers(moto_url, '{"message": "model not loaded"}')  # an answer without a score
    ran = probe.handler({}, None, probe_env)
    assert ran == {
        "ok": False,
        "latency_ms": ran["latency_ms"],
        "why": "answer without predictions",
    }
    assert breaches(min(_points(clients, success)), success["Threshold"])

    drilled = probe.handler({}, None, probe_env | {"PROBE_DRILL_FAIL": "1"})
    assert drilled["ok"] is False and drilled["why"].startswith("drill")
    latency = alarms["ProbeLatency"]
    assert _points(clients, latency)  # the latency alarm's metric is fed too
