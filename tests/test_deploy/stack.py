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
# dropped resources whose Ref is an ARN (lower-cased logical name: the ARN's form)
ARN_REFS = {
    "storeauthtoken": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{{name}}-AbCdEf",
}


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


def moto_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def _stand_in(value: Any, dropped: set[str]) -> Any:
    """References to resources moto cannot create, replaced by what they would return."""
    if isinstance(value, list):
        return [_stand_in(v, dropped) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in dropped:
        name = value["Ref"].lower()
        if name in ARN_REFS:  # Ref returns an ARN, which IAM policies check the form of
            return ARN_REFS[name].format(name=name)
        return f"{name}-id"
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][0] in dropped:
        name, attr = value["Fn::GetAtt"]
        return f"{name.lower()}-{attr.lower()}.execute-api.{REGION}.amazonaws.com"
    return {k: _stand_in(v, dropped) for k, v in value.items()}


def for_moto(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The template without the resource types moto's CloudFormation lacks (returned), each
    reference to them replaced by a stand-in value, so the rest deploys on moto."""
    supported = moto_types()
    resources = template["Resources"]
    dropped = {n for n, r in resources.items() if r["Type"] not in supported}
    kept = {}
    for name, resource in resources.items():
        if name in dropped:
            continue
        resource = _stand_in(dict(resource), dropped)
        depends = resource.get("DependsOn")
        if depends is not None:
            remaining = [d for d in ([depends] if isinstance(depends, str) else depends)]
            remaining = [d for d in remaining if d not in dropped]
            resource["DependsOn"] = remaining
            if not remaining:
                del resource["DependsOn"]
        integration = resource.get("Properties", {}).get("Integration", {})
        if integration.get("Type") == "MOCK":
            # moto's Method reads IntegrationHttpMethod and Uri even where AWS has none (MOCK)
            resource["Properties"]["Integration"] = {
                **integration,
                "IntegrationHttpMethod": "GET",
                "Uri": "",
            }
        kept[name] = resource
    out = {
        **template,
        "Resources": kept,
        "Outputs": _stand_in(template.get("Outputs", {}), dropped),
    }
    return out, {resources[n]["Type"] for n in dropped}
