"""``fraud deploy package`` -> ``apply`` against moto's server, and the guardrailed update
(botocore's Stubber for the calls moto lacks: ``update_endpoint``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from deploy.aws import Clients
from deploy.config import AwsSettings, EndpointSpec
from deploy.endpoint import apply, plan
from deploy.errors import NotFound, PackageMismatch, SettingsError
from deploy.package import PackageRecord, check_against_record, check_uploaded, upload
from deploy.requests import Platform, model_name, rollback_alarm_names
from serving.settings import Settings
from tests.test_deploy.conftest import ACCOUNT, make_tarball
from tests.test_deploy.stack import load as load_template
from tests.test_deploy.stack import put_stack_alarms

SPEC = EndpointSpec(name="fraud-score", instance_type="ml.g4dn.xlarge", canary_percent=10)


def _package(clients: Clients, platform: Platform, tmp_path: Path, weights: bytes) -> PackageRecord:
    tarball = make_tarball(tmp_path / f"{weights.decode()}.tar.gz", weights)
    return upload(clients.s3, tarball, platform.bucket, "models", platform.kms_key_arn)


def test_package_then_apply_creates_the_whole_endpoint(
    clients: Clients, platform: Platform, aws: AwsSettings, tmp_path: Path
) -> None:
    record = _package(clients, platform, tmp_path, b"v1")
    head = clients.s3.head_object(Bucket=record.bucket, Key=record.key)
    assert head["Metadata"]["sha256"] == record.sha256
    put_stack_alarms(clients.cloudwatch, clients.sns, SPEC.name)
    lines = plan(clients, SPEC, platform, record)
    assert lines[-1] == f"create endpoint {SPEC.name} on {lines[1].split()[-1]}"

    sent: list[dict[str, Any]] = []
    clients.sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateModel", lambda params, **_: sent.append(params)
    )
    result = apply(clients, SPEC, platform, record)
    assert result["action"] == "created"

    sm = clients.sagemaker
    model = sm.describe_model(ModelName=model_name(SPEC.name, record.model_version))
    # moto does not store the flag: check the request that went over the wire
    assert [p["EnableNetworkIsolation"] for p in sent] == [True]
    assert model["PrimaryContainer"]["ModelDataUrl"] == record.s3_uri
    config = sm.describe_endpoint_config(EndpointConfigName=result["config"])
    variant = config["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] >= 2
    assert variant["InstanceType"] == "ml.g4dn.xlarge"
    assert "KmsKeyId" not in config  # g4dn has NVMe storage: SageMaker rejects a volume key
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["KmsKeyId"] == platform.kms_key_arn
    assert sm.describe_endpoint(EndpointName=SPEC.name)["EndpointConfigName"] == result["config"]

    target = clients.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")
    (t,) = [t for t in target["ScalableTargets"] if SPEC.name in t["ResourceId"]]
    assert t["MinCapacity"] >= 2 and t["ResourceId"] == f"endpoint/{SPEC.name}/variant/primary"
    policies = clients.autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")
    (p,) = [p for p in policies["ScalingPolicies"] if p["ResourceId"] == t["ResourceId"]]
    metric = p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"

    assert result["alarms"] == rollback_alarm_names(SPEC.name) and result["scaling"] == "registered"

    again = apply(clients, SPEC, platform, record)
    assert again["action"] == "unchanged"
    assert plan(clients, SPEC, platform, record) == [f"{SPEC.name}: no change"]


def test_cpu_instance_type_gets_the_volume_key(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    spec = dataclasses.replace(SPEC, name="fraud-cpu", instance_type="ml.c5.xlarge")
    put_stack_alarms(clients.cloudwatch, clients.sns, spec.name)
    result = apply(clients, spec, platform, _package(clients, platform, tmp_path, b"cpu"))
    config = clients.sagemaker.describe_endpoint_config(EndpointConfigName=result["config"])
    assert config["KmsKeyId"] == platform.kms_key_arn


def test_tarball_changed_after_packaging_is_refused(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    record = _package(clients, platform, tmp_path, b"v1")
    other = make_tarball(tmp_path / "v1.tar.gz", b"v1-edited")
    with pytest.raises(PackageMismatch, match="was uploaded with"):
        check_against_record(other, record)


def test_object_replaced_after_upload_is_refused_by_apply(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    record = _package(clients, platform, tmp_path, b"v1")
    clients.s3.put_object(Bucket=record.bucket, Key=record.key, Body=b"x", Metadata={"sha256": "0"})
    spec = dataclasses.replace(SPEC, name="fraud-replaced")
    with pytest.raises(PackageMismatch, match="replaced after packaging"):
        apply(clients, spec, platform, record)
    names = [e["EndpointName"] for e in clients.sagemaker.list_endpoints()["Endpoints"]]
    assert spec.name not in names


def test_apply_refuses_to_run_before_the_stack_made_its_rollback_alarms(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    spec = dataclasses.replace(SPEC, name="fraud-no-stack")
    record = _package(clients, platform, tmp_path, b"nostack")
    with pytest.raises(NotFound, match="the regional stack owns them"):
        apply(clients, spec, platform, record)
    names = [e["EndpointName"] for e in clients.sagemaker.list_endpoints()["Endpoints"]]
    assert spec.name not in names
    topics = [t["TopicArn"] for t in clients.sns.list_topics()["Topics"]]
    assert not any(t.endswith(f":{spec.name}-alarms") for t in topics)  # apply made none


def test_a_region_is_rebuilt_from_the_replica_without_uploading_again(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    record = _package(clients, platform, tmp_path, b"replicated")
    replica = "fraud-artefacts-replica"
    clients.s3.create_bucket(
        Bucket=replica, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    # what S3 replication writes (moto does not replicate): same key, body and metadata
    source = clients.s3.get_object(Bucket=record.bucket, Key=record.key)
    clients.s3.put_object(
        Bucket=replica, Key=record.key, Body=source["Body"].read(), Metadata=source["Metadata"]
    )
    downloaded = tmp_path / "from-replica.tar.gz"
    downloaded.write_bytes(clients.s3.get_object(Bucket=replica, Key=record.key)["Body"].read())
    puts: list[str] = []
    clients.s3.meta.events.register("before-call.s3.PutObject", lambda **_: puts.append("put"))
    rebuilt = upload(clients.s3, downloaded, replica, "models", None)
    assert puts == []  # the replica is found by key and SHA-256: nothing uploaded again
    assert (rebuilt.key, rebuilt.sha256) == (record.key, record.sha256)
    check_uploaded(clients.s3, rebuilt)


STORE_URL = "rediss://fraud-store.abc123.ng.0001.euw1.cache.amazonaws.com:6379"
STORE_SECRET = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:fraud-store-auth-AbCdEf"


def _store_platform(clients: Clients, platform: Platform) -> Platform:
    """The platform with subnets in two AZs, the endpoint's group and the stack's store."""
    vpc = clients.ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        clients.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=zone)[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(("eu-west-1a", "eu-west-1b"))
    )
    group = clients.ec2.create_security_group(
        GroupName="fraud-endpoint", Description="endpoint instances", VpcId=vpc
    )["GroupId"]
    return dataclasses.replace(
        platform,
        subnets=subnets,
        security_groups=(group,),
        feature_store=STORE_URL,
        store_auth_secret_arn=STORE_SECRET,
    )


def _template_model(name: str) -> dict[str, Any]:
    return dict(load_template("regional.yaml")["Resources"][name]["Properties"])


def test_apply_gives_the_model_the_templates_feature_store_settings(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    store = _store_platform(clients, platform)
    spec = dataclasses.replace(SPEC, name="fraud-store", instance_type="ml.c5.xlarge")
    put_stack_alarms(clients.cloudwatch, clients.sns, spec.name)
    record = _package(clients, store, tmp_path, b"store")
    challenger = _package(clients, store, tmp_path, b"store-challenger")
    sent: list[dict[str, Any]] = []
    clients.sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateModel", lambda params, **_: sent.append(params)
    )
    result = apply(clients, spec, store, record, shadow=challenger)
    sm = clients.sagemaker
    model = sm.describe_model(ModelName=result["model"])
    env = model["PrimaryContainer"]["Environment"]
    assert env == {
        "FRAUD_ENDPOINT_NAME": spec.name,
        "FRAUD_FEATURE_STORE": STORE_URL,
        "FRAUD_STORE_AUTH_SECRET_ARN": STORE_SECRET,
    }
    assert model["VpcConfig"] == {
        "Subnets": list(store.subnets),
        "SecurityGroupIds": list(store.security_groups),
    }
    # the names the template gives its Model, and the server reads (Settings.from_env)
    template_env = _template_model("Model")["PrimaryContainer"]["Environment"]
    assert set(template_env) == set(env)
    settings = Settings.from_env(env, workers=2)
    assert (settings.feature_store, settings.store_auth_secret_arn) == (STORE_URL, STORE_SECRET)
    # moto keeps no EnableNetworkIsolation: the requests sent. Off with the store only; the
    # shadow variant goes isolated and without the store, as the template's ShadowModel
    production, shadow = sent
    assert (
        production["ModelName"] == result["model"] and production["EnableNetworkIsolation"] is False
    )
    assert shadow["ModelName"] == result["shadow"] and shadow["EnableNetworkIsolation"] is True
    assert set(shadow["PrimaryContainer"]["Environment"]) == set(
        _template_model("ShadowModel")["PrimaryContainer"]["Environment"]
    )
    assert _template_model("Model")["EnableNetworkIsolation"] == {
        "Fn::If": ["MakeStore", False, True]
    }
    # the same package without the store is another model (an environment cannot change)
    assert result["model"] != model_name(spec.name, record.model_version)
    assert apply(clients, spec, store, record, shadow=challenger)["action"] == "unchanged"
    assert len(sent) == 2


def test_a_feature_store_without_a_vpc_or_a_secret_without_a_store_is_refused(
    platform: Platform,
) -> None:
    with pytest.raises(SettingsError, match="inside the VPC"):
        dataclasses.replace(platform, feature_store=STORE_URL)
    with pytest.raises(SettingsError, match="needs the feature store"):
        dataclasses.replace(platform, store_auth_secret_arn=STORE_SECRET)
    with pytest.raises(SettingsError, match="expected rediss://"):
        dataclasses.replace(
            platform, feature_store="memcached://x", subnets=("a", "b"), security_groups=("g",)
        )
