"""``fraud deploy`` subcommands: package, plan, apply, status, rollback, promote, neo, train,
tune, evaluate, failover, render, drill.

Each handler builds and validates every setting first (region, credentials, instance type,
canary size, package checksum), then connects: bad input is refused before any AWS call.
The environment is read here only, through :meth:`AwsSettings.from_env`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from deploy.config import AwsSettings, EndpointSpec
from deploy.package import PackageRecord
from deploy.requests import Platform

SUBCOMMANDS = (
    "package",
    "plan",
    "apply",
    "status",
    "rollback",
    "promote",
    "neo",
    "train",
    "tune",
    "evaluate",
    "failover",
    "render",
    "drill",
)


def _aws(args: argparse.Namespace) -> AwsSettings:
    return AwsSettings.from_env(os.environ, region=args.region)


def _spec(args: argparse.Namespace) -> EndpointSpec:
    return EndpointSpec(
        name=args.endpoint,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        max_instances=args.max_instances,
        canary_percent=args.canary_percent,
        baking_s=args.baking_s,
        traffic=args.traffic,
        capture_percent=args.capture_percent,
    )


def _platform(args: argparse.Namespace) -> Platform:
    return Platform(
        role_arn=args.role_arn,
        image_uri=args.image_uri,
        kms_key_arn=args.kms_key_arn,
        bucket=args.bucket,
        subnets=tuple(args.subnet),
        security_groups=tuple(args.security_group),
        feature_store=getattr(args, "feature_store", ""),
        store_auth_secret_arn=getattr(args, "store_auth_secret_arn", ""),
    )


def _records(args: argparse.Namespace) -> tuple[PackageRecord, PackageRecord | None]:
    """The package records, each checked against its local tarball (no AWS call)."""
    from deploy.package import check_against_record, record_path

    out: list[PackageRecord | None] = []
    for tarball in (args.tarball, args.shadow_tarball):
        if tarball is None:
            out.append(None)
            continue
        record = PackageRecord.load(record_path(tarball))
        check_against_record(tarball, record)
        out.append(record)
    assert out[0] is not None  # --tarball is required
    return out[0], out[1]


def _print(obj: object) -> int:
    print(json.dumps(obj, indent=2, default=str))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.package import check_tarball, record_path, upload

    aws = _aws(args)
    check_tarball(args.tarball)
    record = upload(client(aws, "s3"), args.tarball, args.bucket, args.prefix, args.kms_key_arn)
    record.save(record_path(args.tarball))
    return _print(
        {"s3_uri": record.s3_uri, "sha256": record.sha256, "record": str(record_path(args.tarball))}
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from deploy.aws import Clients
    from deploy.endpoint import plan

    aws, spec, platform = _aws(args), _spec(args), _platform(args)
    record, shadow = _records(args)
    for line in plan(Clients.connect(aws), spec, platform, record, shadow):
        print(line)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from deploy.aws import Clients
    from deploy.endpoint import apply, ensure_scaling
    from deploy.rollout import wait

    aws, spec, platform = _aws(args), _spec(args), _platform(args)
    record, shadow = _records(args)
    clients = Clients.connect(aws)
    result = apply(clients, spec, platform, record, shadow)
    if args.wait:
        result["state"] = wait(clients, spec.name, args.timeout_s)
        result["scaling"] = ensure_scaling(clients, spec)
    return _print(result)


def cmd_status(args: argparse.Namespace) -> int:
    from deploy.aws import Clients
    from deploy.rollout import status

    state = status(Clients.connect(_aws(args)), args.endpoint)
    print(state.describe())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from deploy.aws import Clients
    from deploy.rollout import rollback

    aws, spec = _aws(args), _spec(args)
    print(rollback(Clients.connect(aws), spec))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from deploy.aws import Clients
    from deploy.rollout import promote

    aws, spec, platform = _aws(args), _spec(args), _platform(args)
    return _print(promote(Clients.connect(aws), spec, platform))


def cmd_neo(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.neo import compilation_request, compile_model

    aws = _aws(args)
    request = compilation_request(
        args.job_name,
        args.role_arn,
        args.model_uri,
        args.output_uri,
        args.target,
        args.framework_version,
    )
    return _print(compile_model(client(aws, "sagemaker"), request, args.timeout_s))


def _training_job(args: argparse.Namespace) -> Any:
    from deploy.training import TrainingJob
    from model.hyperparameters import parse_pairs

    return TrainingJob(
        name=args.job_name,
        image_uri=args.image_uri,
        role_arn=args.role_arn,
        train_uri=args.train_uri,
        output_uri=args.output_uri,
        checkpoint_uri=args.checkpoint_uri,
        kms_key_arn=args.kms_key_arn,
        instance_type=args.instance_type,
        max_runtime_s=args.max_runtime_s,
        max_wait_s=args.max_wait_s,
        hyperparameters=tuple(sorted(parse_pairs(args.set).items())),
    )


def cmd_train(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.training import train

    aws, job = _aws(args), _training_job(args)
    return _print(train(client(aws, "sagemaker"), job, args.timeout_s))


def cmd_tune(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.tuning_job import default_strings, request, tune

    aws, job = _aws(args), _training_job(args)
    request(args.job_name, job, default_strings(), args.max_parallel)  # refused before AWS
    sagemaker = client(aws, "sagemaker")
    return _print(tune(sagemaker, args.job_name, job, args.max_parallel, args.timeout_s))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.evaluation_job import EvaluationJob, evaluate

    aws = _aws(args)
    job = EvaluationJob(
        name=args.job_name,
        image_uri=args.image_uri,
        role_arn=args.role_arn,
        data_uri=args.data_uri,
        model_uri=args.model_uri,
        output_uri=args.output_uri,
        kms_key_arn=args.kms_key_arn,
        instances=args.instances,
        folds=args.folds,
        seeds=args.seeds,
        instance_type=args.instance_type,
        max_runtime_s=args.max_runtime_s,
    )
    return _print(evaluate(client(aws, "sagemaker"), job, args.timeout_s))


def cmd_failover(args: argparse.Namespace) -> int:
    from deploy.aws import client
    from deploy.errors import SettingsError
    from deploy.front_door import RegionalTarget, ensure_failover

    targets = {}
    for pair in args.target:
        region, _, rest = pair.partition("=")
        host, _, zone = rest.partition("@")
        if not (region and host and zone):
            raise SettingsError(f"--target expects REGION=HOST@ZONE_ID, got {pair!r}")
        targets[region] = RegionalTarget(host, zone, args.endpoint)
    aws = _aws(args)
    return _print(ensure_failover(client(aws, "route53"), args.zone_id, args.domain, targets))


def cmd_render(args: argparse.Namespace) -> int:
    from deploy.stack import render_global

    args.out.write_text(render_global())
    print(args.out)
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    import dataclasses

    from deploy.aws import client
    from deploy.drill import HEALTH_METRICS_REGION, DrillTarget, drill

    aws = _aws(args)
    target = DrillTarget(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DrillTarget)})
    metrics = dataclasses.replace(aws, region=HEALTH_METRICS_REGION)
    report = drill(
        client(aws, "lambda"),
        client(metrics, "cloudwatch"),
        client(aws, "route53"),
        target,
        interval_s=args.interval_s,
    )
    return _print(report)


def _endpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", required=True, help="endpoint name")
    p.add_argument(
        "--instance-type", default="ml.g4dn.xlarge", help="ml.g4dn.*, ml.p3.*, ml.c5.*, ml.c6i.*"
    )
    p.add_argument("--instance-count", type=int, default=2, help="at least 2 (spread over AZs)")
    p.add_argument("--max-instances", type=int, default=6)
    p.add_argument("--canary-percent", type=int, default=10, help="1-50 %% of capacity")
    p.add_argument("--baking-s", type=int, default=600, help="wait between traffic shifts")
    p.add_argument("--traffic", default="CANARY", choices=["CANARY", "LINEAR", "ALL_AT_ONCE"])
    p.add_argument("--capture-percent", type=int, default=100)


def _platform_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role-arn", required=True, help="the regional stack's ExecutionRoleArn")
    p.add_argument("--image-uri", required=True, help="serving image in ECR")
    p.add_argument("--kms-key-arn", required=True, help="the regional stack's KmsKeyArn")
    p.add_argument("--bucket", required=True, help="the regional stack's ArtefactBucket")
    p.add_argument("--subnet", action="append", default=[], help="VPC subnet (two AZs)")
    p.add_argument("--security-group", action="append", default=[])
    p.add_argument(
        "--feature-store",
        default="",
        help="the stack's store (FeatureStore=true): rediss://<FeatureStoreAddress>:6379",
    )
    p.add_argument(
        "--store-auth-secret-arn", default="", help="the stack's StoreAuthSecretArn output"
    )


def _package_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tarball", type=Path, required=True, help="model.tar.gz packaged before")
    p.add_argument("--shadow-tarball", type=Path, help="challenger model for a shadow variant")


def add_deploy_parser(sub: Any) -> None:
    """Register ``fraud deploy`` and its subcommands on the top-level subparsers."""
    deploy = sub.add_parser("deploy", help="SageMaker endpoints: package, plan, apply, ...")
    deploy.add_argument("--region", help="AWS region (default AWS_REGION)")
    cmds = deploy.add_subparsers(dest="deploy_command", required=True)

    p = cmds.add_parser("package", help="check and upload model.tar.gz, record its SHA-256")
    p.add_argument("--tarball", type=Path, required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="models")
    p.add_argument("--kms-key-arn", help="SSE-KMS key for the object")
    p.set_defaults(func=cmd_package)

    for name, func, help_text in (
        ("plan", cmd_plan, "show what apply would change"),
        ("apply", cmd_apply, "create or update the endpoint (guardrailed update)"),
    ):
        p = cmds.add_parser(name, help=help_text)
        _endpoint_args(p)
        _platform_args(p)
        _package_args(p)
        if name == "apply":
            p.add_argument("--wait", action="store_true", help="wait for the endpoint to settle")
            p.add_argument("--timeout-s", type=float, default=3_600)
        p.set_defaults(func=func)

    p = cmds.add_parser("status", help="endpoint and deployment state, rollbacks included")
    p.add_argument("--endpoint", required=True)
    p.set_defaults(func=cmd_status)

    p = cmds.add_parser("rollback", help="return to the previous endpoint config")
    _endpoint_args(p)
    p.set_defaults(func=cmd_rollback)

    p = cmds.add_parser("promote", help="make the shadow variant's model the production one")
    _endpoint_args(p)
    _platform_args(p)
    p.set_defaults(func=cmd_promote)

    p = cmds.add_parser("neo", help="compile the traced PyTorch model with SageMaker Neo")
    p.add_argument("--job-name", required=True)
    p.add_argument("--role-arn", required=True)
    p.add_argument("--model-uri", required=True, help="s3://.../model.tar.gz with model.pth")
    p.add_argument("--output-uri", required=True)
    p.add_argument("--target", default="ml_g4dn", help="ml_g4dn or ml_p3")
    p.add_argument("--framework-version", default="2.0", help="PyTorch <= 2.0")
    p.add_argument("--timeout-s", type=float, default=1_800)
    p.set_defaults(func=cmd_neo)

    for name, func, help_text in (
        ("train", cmd_train, "SageMaker training job on managed spot instances"),
        ("tune", cmd_tune, "managed-spot tuning job over fraud tune nn's search space"),
    ):
        p = cmds.add_parser(name, help=help_text)
        limit = " (at most 32 characters)" if name == "tune" else ""
        p.add_argument("--job-name", required=True, help=f"job name{limit}")
        p.add_argument("--image-uri", required=True)
        p.add_argument("--role-arn", required=True)
        p.add_argument("--train-uri", required=True, help="s3:// prefix of the transactions")
        p.add_argument("--output-uri", required=True)
        p.add_argument("--checkpoint-uri", required=True)
        p.add_argument("--kms-key-arn", required=True)
        p.add_argument("--instance-type", default="ml.g4dn.xlarge")
        p.add_argument("--max-runtime-s", type=int, default=3_600)
        p.add_argument("--max-wait-s", type=int, default=7_200)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        if name == "tune":
            p.add_argument("--max-parallel", type=int, default=2, help="training jobs at once")
        p.add_argument("--timeout-s", type=float, default=7_200 if name == "train" else 86_400)
        p.set_defaults(func=func)

    p = cmds.add_parser("evaluate", help="prequential folds as one Processing job, N instances")
    p.add_argument("--job-name", required=True)
    p.add_argument("--image-uri", required=True, help="the training image (fraud evaluate)")
    p.add_argument("--role-arn", required=True)
    p.add_argument("--data-uri", required=True, help="s3:// prefix of the transactions")
    p.add_argument("--model-uri", required=True, help="s3://.../model.tar.gz of a training job")
    p.add_argument("--output-uri", required=True, help="s3:// prefix for the shard files")
    p.add_argument("--kms-key-arn", required=True)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--instance-type", default="ml.c5.2xlarge")
    p.add_argument("--max-runtime-s", type=int, default=14_400)
    p.add_argument("--timeout-s", type=float, default=14_400)
    p.set_defaults(func=cmd_evaluate)

    p = cmds.add_parser("failover", help="Route 53 latency records + health checks, 2 regions")
    p.add_argument("--zone-id", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--endpoint", default="fraud-score", help="EndpointName in both regions")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="REGION=HOST@ZONE_ID",
        help="the global stack outputs RegionalDomainName and RegionalHostedZoneId",
    )
    p.set_defaults(func=cmd_failover)

    p = cmds.add_parser("render", help="the global template as deployed (API deployment named)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_render)

    p = cmds.add_parser(
        "drill", help="fail region A's probe, watch DNS leave it, restore (real account)"
    )
    p.add_argument("--probe-function", required=True, help="regional ProbeFunctionName")
    p.add_argument("--health-check-id", required=True, help="global stack's HealthCheckId")
    p.add_argument("--zone-id", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--client-ip", help="a client subnet near region A (TestDNSAnswer)")
    p.add_argument("--interval-s", type=float, default=20.0)
    p.set_defaults(func=cmd_drill)
