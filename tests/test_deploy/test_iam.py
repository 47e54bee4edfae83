"""One owner per concern in the roles, each least privilege: the policies are read from the
templates, their names resolved, and each role asked what it may do (Allow statements,
wildcards matched as IAM matches them; conditions are checked where they narrow a "*")."""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

from deploy import probe
from tests.test_deploy.conftest import ACCOUNT, REGION
from tests.test_deploy.stack import load, parameters, resolve

BUCKET = "arn:aws:s3:::fraud-artefacts"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k"
ENDPOINT = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/fraud-score"


def _statements(template: str, role: str, **overrides: str) -> list[dict[str, Any]]:
    doc = load(template)
    names = parameters(doc, **overrides) | {
        "Bucket.Arn": BUCKET,
        "ProbeLogs.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/fraud-score-probe",
    }
    resources = doc["Resources"]
    docs = [p["PolicyDocument"] for p in resources[role]["Properties"].get("Policies", [])]
    docs += [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
    ]
    out = []
    for d in docs:
        for s in d["Statement"]:
            s = resolve(dict(s), names)
            if isinstance(s.get("Resource"), dict) and "Fn::GetAtt" in s["Resource"]:
                target = s["Resource"]["Fn::GetAtt"][0]
                s["Resource"] = {"Bucket": BUCKET, "Key": KEY}.get(target, target)
            out.append(s)
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allows(template: str, role: str, action: str, resource: str, **overrides: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action, a) for a in _list(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, str(r)) for r in _list(s["Resource"]))
        for s in _statements(template, role, **overrides)
    )


R = "regional.yaml"
MODEL = f"{BUCKET}/models/fraud-score/model.tar.gz"
DATA = f"{BUCKET}/data/transactions.parquet"
NEO = f"{BUCKET}/neo/model-neo.tar.gz"
CAPTURE = f"{BUCKET}/capture/fraud-score/primary/x.jsonl"


@pytest.mark.parametrize(
    ("role", "action", "resource", "allowed"),
    [
        # the endpoint reads models and writes capture; it cannot write models or read data
        ("ExecutionRole", "s3:GetObject", MODEL, True),
        ("ExecutionRole", "s3:PutObject", CAPTURE, True),
        ("ExecutionRole", "s3:PutObject", MODEL, False),
        ("ExecutionRole", "s3:GetObject", DATA, False),
        ("ExecutionRole", "s3:GetObject", NEO, False),
        ("ExecutionRole", "cloudwatch:PutMetricData", "*", False),
        ("ExecutionRole", "cloudwatch:DescribeAlarms", "*", True),  # auto-rollback
        # training reads data, writes models and checkpoints; it cannot touch capture
        ("TrainingRole", "s3:GetObject", DATA, True),
        ("TrainingRole", "s3:PutObject", MODEL, True),
        ("TrainingRole", "s3:GetObject", CAPTURE, False),
        ("TrainingRole", "sagemaker:InvokeEndpoint", ENDPOINT, False),
        # Neo reads and writes its neo/ prefix only
        ("NeoRole", "s3:GetObject", NEO, True),
        ("NeoRole", "s3:PutObject", f"{BUCKET}/neo/out/model.tar.gz", True),
        ("NeoRole", "s3:GetObject", MODEL, False),
        ("NeoRole", "s3:PutObject", MODEL, False),
        # the probe invokes its endpoint and nothing else
        ("ProbeRole", "sagemaker:InvokeEndpoint", ENDPOINT, True),
        ("ProbeRole", "sagemaker:InvokeEndpoint", ENDPOINT + "-other", False),
        ("ProbeRole", "s3:GetObject", MODEL, False),
        ("ProbeRole", "sagemaker:UpdateEndpoint", ENDPOINT, False),
    ],
)
def test_each_role_may_do_its_job_and_nothing_next_to_it(
    role: str, action: str, resource: str, allowed: bool
) -> None:
    assert allows(R, role, action, resource) is allowed


def test_the_front_door_only_invokes_its_endpoint() -> None:
    (statement,) = _statements("global.yaml", "InvokeRole")
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert statement["Resource"] == ENDPOINT


def test_open_resources_are_narrowed_by_conditions() -> None:
    namespaces = {}
    for role in ("ExecutionRole", "TrainingRole", "NeoRole", "ProbeRole"):
        for s in _statements(R, role):
            actions = _list(s["Action"])
            if "kms:CreateGrant" in actions:
                assert s["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}, role
            if "cloudwatch:PutMetricData" in actions:
                namespaces[role] = s["Condition"]["StringEquals"]["cloudwatch:namespace"]
    assert namespaces == {
        "TrainingRole": "/aws/sagemaker/TrainingJobs",
        "ProbeRole": probe.NAMESPACE,
    }


def test_replication_reads_only_models_and_writes_only_the_replica() -> None:
    replica = "arn:aws:s3:::fraud-artefacts-us-east-1"
    other = {
        "ReplicaBucketArn": replica,
        "ReplicaKmsKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/r",
    }
    by_sid = {s["Sid"]: s for s in _statements(R, "ReplicationRole", **other)}
    assert by_sid["ReadSourceVersions"]["Resource"] == f"{BUCKET}/models/*"
    assert by_sid["WriteReplicas"]["Resource"] == f"{replica}/models/*"
    assert allows(R, "ReplicationRole", "s3:ReplicateObject", f"{replica}/models/m", **other)
    assert not allows(R, "ReplicationRole", "s3:ReplicateObject", f"{replica}/capture/x", **other)
    assert not allows(R, "ReplicationRole", "s3:GetObjectVersionForReplication", CAPTURE, **other)
    via = {s: by_sid[s]["Condition"]["StringEquals"]["kms:ViaService"] for s in by_sid if "S3" in s}
    assert via == {
        "DecryptSourceThroughS3": f"s3.{REGION}.amazonaws.com",
        "EncryptReplicasThroughS3": "s3.us-east-1.amazonaws.com",
    }
    rule = load(R)["Resources"]["Bucket"]["Properties"]["ReplicationConfiguration"]["Fn::If"][1]
    (only,) = rule["Rules"]
    assert only["Filter"] == {"Prefix": "models/"}
    assert only["Destination"]["EncryptionConfiguration"] == {
        "ReplicaKmsKeyID": {"Ref": "ReplicaKmsKeyArn"}
    }


def test_the_regional_key_admits_cloudwatch_logs_for_exactly_our_log_groups() -> None:
    regional, front_door = load(R), load("global.yaml")
    names = parameters(regional)
    (statement,) = [
        s
        for s in regional["Resources"]["Key"]["Properties"]["KeyPolicy"]["Statement"]
        if s["Sid"] == "CloudWatchLogsEncryptsOurLogGroups"
    ]
    allowed = set(
        resolve(statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"], names)
    )
    groups = [
        resolve(regional["Resources"]["ProbeLogs"]["Properties"]["LogGroupName"], names),
        resolve(front_door["Resources"]["AccessLogs"]["Properties"]["LogGroupName"], names),
    ]
    prefix = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    assert allowed == {prefix + g for g in groups}
    assert front_door["Resources"]["AccessLogs"]["Properties"]["KmsKeyId"] == {"Ref": "KmsKeyArn"}
