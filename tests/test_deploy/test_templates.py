"""The CloudFormation templates: the regional stack deploys through moto's CloudFormation, the
custom encryption rule passes them and fails a template that drops encryption, and every
wildcard or checkov skip is in the reviewed suppression list."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.decode import cfn_yaml

from deploy.checks.endpoint_encryption import problems
from deploy.config import AwsSettings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "deploy" / "templates"
UNENCRYPTED = Path(__file__).parent / "data" / "unencrypted.yaml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# resource types moto's CloudFormation skips (with a warning) instead of creating
MOTO_SKIPS = {
    "AWS::S3::BucketPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}


def _load(path: Path) -> dict[str, Any]:
    return cfn_yaml.load(str(path))


def _boto(aws: AwsSettings, service: str) -> Any:
    return boto3.client(
        service,
        region_name=aws.region,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        endpoint_url=aws.endpoint_url,
    )


def _deploy(aws: AwsSettings, stack: str, **parameters: str) -> dict[str, str]:
    cfn = _boto(aws, "cloudformation")
    cfn.create_stack(
        StackName=stack,
        TemplateBody=(TEMPLATES / "regional.yaml").read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (desc,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert desc["StackStatus"] == "CREATE_COMPLETE", desc.get("StackStatusReason")
    summaries = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    created = {r["ResourceType"] for r in summaries if r.get("ResourceType")}
    template_types = {r["Type"] for r in _load(TEMPLATES / "regional.yaml")["Resources"].values()}
    assert created == template_types - MOTO_SKIPS  # everything moto supports was created
    return {o["OutputKey"]: o["OutputValue"] for o in desc["Outputs"]}


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_regional_stack_deploys_through_motos_cloudformation(aws: AwsSettings) -> None:
    out = _deploy(aws, "fraud-gpu", EndpointName="fraud-gpu", InstanceType="ml.g4dn.xlarge")
    sm = _boto(aws, "sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=out["EndpointName"])
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InitialInstanceCount"] >= 2
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    assert config["DataCaptureConfig"]["KmsKeyId"] == out["KmsKeyArn"]
    assert "KmsKeyId" not in config  # g4dn: NVMe storage rejects a volume key
    # moto applies the bucket's encryption from a template (versioning etc.: see below)
    s3 = _boto(aws, "s3")
    rule = s3.get_bucket_encryption(Bucket=out["BucketName"])["ServerSideEncryptionConfiguration"]
    default = rule["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms" and default["KMSMasterKeyID"] == out["KmsKeyArn"]


def test_bucket_is_versioned_private_and_tls_only() -> None:
    # moto's CloudFormation ignores these properties and the bucket policy: read the template
    resources = _load(TEMPLATES / "regional.yaml")["Resources"]
    bucket = resources["Bucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    (deny,) = resources["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_regional_stack_on_a_cpu_type_encrypts_the_volume(aws: AwsSettings) -> None:
    out = _deploy(
        aws, "fraud-cpu-stack", EndpointName="fraud-cpu-stack", InstanceType="ml.c5.xlarge"
    )
    sm = _boto(aws, "sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=out["EndpointName"])
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["KmsKeyId"] == out["KmsKeyArn"]


def test_encryption_rule_passes_the_templates_and_names_what_is_missing() -> None:
    config = _load(TEMPLATES / "regional.yaml")["Resources"]["EndpointConfig"]["Properties"]
    assert problems(config) == []
    bad = _load(UNENCRYPTED)["Resources"]["EndpointConfig"]["Properties"]
    found = problems(bad)
    assert any("DataCaptureConfig has no KmsKeyId" in p for p in found)
    assert any("no KmsKeyId: the ML storage volume" in p for p in found)


def test_encryption_rule_knows_the_nvme_exception() -> None:
    capture = {"DataCaptureConfig": {"KmsKeyId": "k"}}
    g4dn = [{"InstanceType": "ml.g4dn.xlarge"}]
    assert problems({**capture, "ProductionVariants": g4dn}) == []
    assert "local NVMe" in problems({**capture, "ProductionVariants": g4dn, "KmsKeyId": "k"})[0]
    c5 = [{"InstanceType": "ml.c5.xlarge"}]
    assert problems({**capture, "ProductionVariants": c5, "KmsKeyId": "k"}) == []


@pytest.mark.skipif(not CHECKOV.exists(), reason="make lint-cfn builds .venv-checkov")
def test_checkov_custom_rule_fails_a_template_that_drops_encryption() -> None:
    def checkov(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CHECKOV), "--quiet", "--compact", "--skip-download", "-c", "CKV_FRAUD_1"]
            + ["--external-checks-dir", str(ROOT / "deploy/checks/external"), "-f", str(path)],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            timeout=120,
        )

    bad = checkov(UNENCRYPTED)
    assert bad.returncode == 1 and "CKV_FRAUD_1" in bad.stdout
    good = checkov(TEMPLATES / "regional.yaml")
    assert good.returncode == 0 and "Passed checks: 1" in good.stdout, good.stdout + good.stderr


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    props = resource.get("Properties", {})
    docs = [props.get("KeyPolicy"), props.get("PolicyDocument")]
    docs += [p.get("PolicyDocument") for p in props.get("Policies", [])]
    return [s for d in docs if d for s in d["Statement"] if s["Effect"] == "Allow"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_wildcard_and_checkov_skip_is_in_the_reviewed_list() -> None:
    listed = yaml.safe_load((ROOT / "deploy" / "suppressions.yaml").read_text())
    wildcards, skips = set(), set()
    for path in sorted(TEMPLATES.glob("*.yaml")):
        for name, resource in _load(path)["Resources"].items():
            for s in _statements(resource):
                if "*" in _as_list(s.get("Resource")) or any(
                    isinstance(a, str) and a.endswith("*") for a in _as_list(s["Action"])
                ):
                    wildcards.add((path.name, name, s.get("Sid")))
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                skips.add((path.name, name, skip["id"]))
    assert wildcards == {(e["template"], e["resource"], e["sid"]) for e in listed["iam_wildcards"]}
    assert skips == {(e["template"], e["resource"], e["id"]) for e in listed["checkov_skips"]}
    assert all(e["reason"].strip() for e in listed["iam_wildcards"] + listed["checkov_skips"])
