"""The CloudFormation templates: the regional stack deploys through moto's CloudFormation, the
custom encryption rule passes them and fails a template that drops encryption, and every
wildcard or checkov skip is in the reviewed suppression list."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.decode import cfn_yaml

from deploy.checks.endpoint_encryption import problems
from deploy.config import AwsSettings
from deploy.stack import deployment_id, render_global
from tests.test_deploy.conftest import REGION
from tests.test_deploy.stack import for_moto

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "deploy" / "templates"
UNENCRYPTED = Path(__file__).parent / "data" / "unencrypted.yaml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# resource types moto's CloudFormation skips (with a warning) instead of creating; checked by
# cfn-lint, checkov and the tests that read the template or replay its requests instead
MOTO_SKIPS = {
    "AWS::S3::BucketPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}
# conditions false with the default parameters (no shadow, no replication, no feature store)
OFF_BY_DEFAULT = {"MakeShadow", "Replicate", "ReplicateImages", "MakeStore"}


def _load(path: Path) -> dict[str, Any]:
    return cfn_yaml.load(str(path))


def _boto(aws: AwsSettings, service: str, region: str | None = None) -> Any:
    return boto3.client(
        service,
        region_name=region or aws.region,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        endpoint_url=aws.endpoint_url,
    )


def _create(
    aws: AwsSettings, stack: str, template: dict[str, Any], region: str, **parameters: str
) -> tuple[dict[str, str], set[str]]:
    """Create the stack on moto; its outputs and the resource types it created."""
    cfn = _boto(aws, "cloudformation", region)
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (desc,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    assert desc["StackStatus"] == "CREATE_COMPLETE", desc.get("StackStatusReason")
    summaries = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    created = {r["ResourceType"] for r in summaries if r.get("ResourceType")}
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}, created


def _deploy(
    aws: AwsSettings, stack: str, region: str = REGION, **parameters: str
) -> dict[str, str]:
    template = _load(TEMPLATES / "regional.yaml")
    out, created = _create(aws, stack, template, region, **parameters)
    active = {
        r["Type"]
        for r in template["Resources"].values()
        if r.get("Condition") not in OFF_BY_DEFAULT
    }
    assert created == active - MOTO_SKIPS  # everything moto supports was created
    return out


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


def test_every_wildcard_checkov_skip_and_cfn_lint_ignore_is_in_the_reviewed_list() -> None:
    listed = yaml.safe_load((ROOT / "deploy" / "suppressions.yaml").read_text())
    wildcards, skips, ignores = set(), set(), set()
    for path in sorted(TEMPLATES.glob("*.yaml")):
        for name, resource in _load(path)["Resources"].items():
            for s in _statements(resource):
                if "*" in _as_list(s.get("Resource")) or any(
                    isinstance(a, str) and a.endswith("*") for a in _as_list(s["Action"])
                ):
                    wildcards.add((path.name, name, s.get("Sid")))
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                skips.add((path.name, name, skip["id"]))
            config = resource.get("Metadata", {}).get("cfn-lint", {}).get("config", {})
            for check in config.get("ignore_checks", []):
                ignores.add((path.name, name, check))
    assert wildcards == {(e["template"], e["resource"], e["sid"]) for e in listed["iam_wildcards"]}
    assert skips == {(e["template"], e["resource"], e["id"]) for e in listed["checkov_skips"]}
    listed_ignores = listed["cfn_lint_ignores"]
    assert ignores == {(e["template"], e["resource"], e["id"]) for e in listed_ignores}
    reviewed = listed["iam_wildcards"] + listed["checkov_skips"] + listed_ignores
    assert all(e["reason"].strip() for e in reviewed)


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_two_regional_stacks_and_their_front_doors_deploy_on_moto(aws: AwsSettings) -> None:
    zone = _boto(aws, "route53").create_hosted_zone(Name="fraud.example.com", CallerReference="dr")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    domain = "score.fraud.example.com"
    front_door, skipped = for_moto(cfn_yaml.loads(render_global()))
    # moto's CloudFormation lacks these; cfn-lint and checkov check them
    assert skipped == {
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::DomainName",
        "AWS::ApiGateway::BasePathMapping",
        "AWS::ApiGateway::Account",
    }
    checks = {}
    for region in ("eu-west-1", "us-east-1"):
        regional = _deploy(aws, f"fraud-dr-{region}", region, EndpointName="fraud-dr")
        assert regional["ProbeFunctionName"] == "fraud-dr-probe"
        params = {"EndpointName": "fraud-dr", "HostedZoneId": zone_id, "DomainName": domain}
        out, created = _create(aws, f"fraud-door-{region}", front_door, region, **params)
        assert created == {r["Type"] for r in front_door["Resources"].values()}
        checks[region] = out["HealthCheckId"]
    route53 = _boto(aws, "route53")
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    latency = {r["SetIdentifier"]: r for r in records if r["Name"].rstrip(".") == domain}
    assert {region: r["HealthCheckId"] for region, r in latency.items()} == checks
    assert {r["Region"] for r in latency.values()} == set(checks)
    own = {r["Name"].rstrip(".") for r in records if "SetIdentifier" not in r}
    assert {f"{region}.{domain}" for region in checks} <= own
    listed = {c["Id"]: c for c in route53.list_health_checks()["HealthChecks"]}
    assert {listed[c]["HealthCheckConfig"]["Type"] for c in checks.values()} == {"CALCULATED"}


def test_render_redeploys_the_api_when_a_method_changes(tmp_path: Path) -> None:
    from cli.main import run

    out = tmp_path / "global.rendered.yaml"
    assert run(["deploy", "render", "--out", str(out)], tmp_path) == 0
    rendered = cfn_yaml.loads(out.read_text())
    (deployment,) = [
        n for n, r in rendered["Resources"].items() if r["Type"] == "AWS::ApiGateway::Deployment"
    ]
    assert deployment != "Deployment"
    assert rendered["Resources"]["Stage"]["Properties"]["DeploymentId"] == {"Ref": deployment}
    source = (TEMPLATES / "global.yaml").read_text()
    changed = source.replace("TimeoutInMillis: 1000", "TimeoutInMillis: 900")
    assert changed != source
    assert deployment_id(changed) != deployment == deployment_id(source)
    assert render_global(source) == out.read_text()  # the same template renders the same


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_the_feature_store_puts_the_model_in_the_vpc_with_the_secrets_arn_only(
    aws: AwsSettings,
) -> None:
    ec2 = _boto(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{az}")
        for i, az in enumerate("ab")
    ]
    template, skipped = for_moto(_load(TEMPLATES / "regional.yaml"))
    # moto's CloudFormation lacks these; cfn-lint and checkov check them (and the reads below)
    assert skipped - MOTO_SKIPS - {"AWS::ECR::ReplicationConfiguration"} == {
        "AWS::SecretsManager::Secret",
        "AWS::ElastiCache::SubnetGroup",
        "AWS::ElastiCache::ReplicationGroup",
    }
    out, created = _create(
        aws,
        "fraud-store",
        template,
        REGION,
        EndpointName="fraud-store",
        FeatureStore="true",
        VpcId=vpc,
        SubnetIds=",".join(s["Subnet"]["SubnetId"] for s in subnets),
    )
    assert {"AWS::EC2::SecurityGroup", "AWS::IAM::Policy"} <= created
    sm = _boto(aws, "sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=out["EndpointName"])
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    env = model["PrimaryContainer"]["Environment"]
    # the store's address (a stand-in on moto) and the secret's reference, not its value
    address, port = env["FRAUD_FEATURE_STORE"].removeprefix("rediss://").split(":")
    assert address.startswith("featurestoregroup-primaryendpoint.address")
    assert port.startswith("featurestoregroup-primaryendpoint.port")
    assert env["FRAUD_STORE_AUTH_SECRET_ARN"] == out["StoreAuthSecretArn"]
    assert not any("resolve:secretsmanager" in v for v in env.values())
    # the endpoint's own security group is the only source the store admits, on 6379
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "SecurityGroups"
        ]
    }
    (store,) = [g for g in groups.values() if "Redis from the endpoint" in g["Description"]]
    (endpoint_group,) = [g for g in groups.values() if "endpoint instances" in g["Description"]]
    (rule,) = store["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6379, 6379)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [endpoint_group["GroupId"]]
    assert rule["IpRanges"] == []
    assert model["VpcConfig"]["SecurityGroupIds"] == [endpoint_group["GroupId"]]
    # moto keeps no EnableNetworkIsolation: isolated unless the store is on
    resources = _load(TEMPLATES / "regional.yaml")["Resources"]
    isolation = resources["Model"]["Properties"]["EnableNetworkIsolation"]
    assert isolation == {"Fn::If": ["MakeStore", False, True]}
    # the token's template: generated, encrypted with the stack key, read by the role only
    secret = resources["StoreAuthToken"]["Properties"]
    assert "GenerateSecretString" in secret and secret["KmsKeyId"] == {"Fn::GetAtt": ["Key", "Arn"]}
    group = resources["FeatureStoreGroup"]["Properties"]
    assert group["AuthToken"] == {"Fn::Sub": "{{resolve:secretsmanager:${StoreAuthToken}}}"}
    assert group["TransitEncryptionEnabled"] and group["AtRestEncryptionEnabled"]
    assert group["AutomaticFailoverEnabled"] and group["MultiAZEnabled"]
    assert group["NumCacheClusters"] == 2
