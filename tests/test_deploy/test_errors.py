"""botocore failures become clear deploy errors; VPC subnets must span two AZs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from deploy.aws import Clients, translate
from deploy.config import EndpointSpec
from deploy.endpoint import apply
from deploy.errors import (
    AwsError,
    Conflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    SettingsError,
)
from deploy.package import upload
from deploy.requests import Platform
from tests.test_deploy.conftest import make_tarball


def _error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "CreateEndpoint")


@pytest.mark.parametrize(
    ("code", "message", "kind", "says"),
    [
        ("AccessDeniedException", "not authorized", PermissionDenied, "missing IAM permission"),
        ("ResourceLimitExceeded", "ml.p3.2xlarge for endpoint usage", QuotaExceeded, "quota"),
        ("ValidationException", "Could not find endpoint fraud", NotFound, "not found"),
        ("ResourceInUse", "endpoint is updating", Conflict, "wrong state"),
        ("ValidationException", "bad value", AwsError, "ValidationException: bad value"),
    ],
)  # fmt: skip
def test_botocore_errors_are_translated_with_the_action_named(
    code: str, message: str, kind: type[AwsError], says: str
) -> None:
    error = translate(_error(code, message), "create endpoint fraud")
    assert type(error) is kind
    assert str(error).startswith("create endpoint fraud: ") and says in str(error)


def test_connection_failures_name_the_action() -> None:
    error = translate(EndpointConnectionError(endpoint_url="http://x"), "describe endpoint e")
    assert type(error) is AwsError and "describe endpoint e" in str(error)


def test_vpc_config_needs_two_subnets_and_a_group(platform: Platform) -> None:
    with pytest.raises(SettingsError, match="two Availability Zones"):
        dataclasses.replace(platform, subnets=("subnet-1",), security_groups=("sg-1",))


def test_subnets_in_one_zone_are_refused(
    clients: Clients, platform: Platform, tmp_path: Path
) -> None:
    vpc = clients.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        clients.ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone="eu-west-1a"
        )
        for i in (1, 2)
    ]
    group = clients.ec2.create_security_group(GroupName="fraud", Description="d", VpcId=vpc)
    vpc_platform = dataclasses.replace(
        platform,
        subnets=tuple(s["Subnet"]["SubnetId"] for s in subnets),
        security_groups=(group["GroupId"],),
    )
    record = upload(clients.s3, make_tarball(tmp_path / "m.tar.gz"), platform.bucket, "m", None)
    with pytest.raises(SettingsError, match="all in eu-west-1a"):
        apply(clients, EndpointSpec(name="fraud-vpc"), vpc_platform, record)
    names = [e["EndpointName"] for e in clients.sagemaker.list_endpoints()["Endpoints"]]
    assert "fraud-vpc" not in names
