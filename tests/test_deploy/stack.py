"""Reading the CloudFormation templates in tests: parameters and the intrinsic functions the
templates use for names (Ref, Sub, Select, Split), resolved the way CloudFormation would, and
the stack's alarms put into moto (its CloudFormation skips AWS::CloudWatch::Alarm)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

from tests.test_deploy.conftest import ACCOUNT, REGION

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "templates"


def load(name: str) -> dict[str, Any]:
    return dict(cfn_yaml.load(str(TEMPLATES / name)))


def parameters(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
    }
    for name, spec in template.get("Parameters", {}).items():
        values[name] = spec.get("Default")
    return values | overrides


def resolve(value: Any, names: dict[str, Any]) -> Any:
    """``value`` with Ref / Fn::Sub / Fn::Select / Fn::Split of ``names`` resolved."""
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return names.get(value["Ref"], value)
    if set(value) == {"Fn::Sub"}:
        text, extra = (
            (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        )
        local = names | {k: resolve(v, names) for k, v in extra.items()}
        return re.sub(r"\$\{([\w:.]+)\}", lambda m: str(local.get(m[1], m[0])), text)
    if set(value) == {"Fn::Select"}:
        index, items = value["Fn::Select"]
        return resolve(items, names)[int(index)]
    if set(value) == {"Fn::Split"}:
        sep, text = value["Fn::Split"]
        return str(resolve(text, names)).split(sep)
    return {k: resolve(v, names) for k, v in value.items()}


def alarm_requests(topic_arn: str, **overrides: str) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for the regional stack's alarms, as CloudFormation sends them."""
    template = load("regional.yaml")
    names = parameters(template, **overrides) | {"AlarmTopic": topic_arn}
    out = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            props = resolve(dict(resource["Properties"]), names)
            for key in ("Threshold", "Period", "EvaluationPeriods", "DatapointsToAlarm"):
                if key in props:
                    props[key] = float(props[key]) if key == "Threshold" else int(props[key])
            out.append(props)
    return out


def put_stack_alarms(cloudwatch: Any, sns: Any, endpoint: str) -> list[dict[str, Any]]:
    """The alarms (and topic) the regional stack with ``EndpointName=endpoint`` owns."""
    topic = sns.create_topic(Name=f"{endpoint}-alarms")["TopicArn"]
    requests = alarm_requests(topic, EndpointName=endpoint)
    for request in requests:
        cloudwatch.put_metric_alarm(**request)
    return requests
