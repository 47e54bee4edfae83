"""Requests of the spot tuning job over ``fraud tune nn``'s space (botocore's Stubber; its
grid holds every named candidate) and of the prequential evaluation as one Processing job
over N instances; ``fraud deploy tune`` and ``fraud deploy evaluate`` submitting them to
moto's server from the command line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from cli.main import run
from deploy.aws import client
from deploy.config import AwsSettings
from deploy.evaluation_job import EvaluationJob
from deploy.training import TrainingJob
from deploy.tuning_job import OBJECTIVE, default_strings, request, search_space
from model.tuning import NN_CANDIDATES

DEFAULTS = default_strings()
JOB = TrainingJob(
    name="unused",
    image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud-serve:1",
    role_arn="arn:aws:iam::123456789012:role/fraud-exec",
    train_uri="s3://b/data/",
    output_uri="s3://b/models/",
    checkpoint_uri="s3://b/checkpoints/tuning/",
    kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k",
    hyperparameters=(("max_epochs", "20"), ("activation", "silu")),
)


def test_tuning_request_is_valid_spot_and_reads_trains_metric_lines() -> None:
    args = request("fraud-nn-tuning", JOB, DEFAULTS)
    client = boto3.client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:hyper-parameter-tuning-job/fraud-nn-tuning"
    with Stubber(client) as stub:
        stub.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": arn}, args
        )
        client.create_hyper_parameter_tuning_job(**args)
    definition = args["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True and "CheckpointConfig" in definition
    names = {m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]}
    assert OBJECTIVE in names
    # a tuned key is not also a static one
    assert "activation" not in definition["StaticHyperParameters"]


def test_grid_holds_every_named_candidate() -> None:
    space = search_space(NN_CANDIDATES, DEFAULTS)
    grid = [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]
    for overrides in NN_CANDIDATES.values():
        wanted = {k: overrides.get(k, DEFAULTS[k]) for k in space}
        assert wanted in grid


def _evaluation_job(name: str) -> EvaluationJob:
    return EvaluationJob(
        name=name,
        image_uri=JOB.image_uri,
        role_arn=JOB.role_arn,
        data_uri="s3://b/data/",
        model_uri="s3://b/models/candidates/job/output/model.tar.gz",
        output_uri="s3://b/evaluation/shards/",
        kms_key_arn=JOB.kms_key_arn,
        instances=4,
    )


def test_sharded_evaluation_job_is_a_valid_request_over_n_instances() -> None:
    from botocore.validate import ParamValidator

    args = _evaluation_job("fraud-prequential").request()
    client = boto3.client("sagemaker", region_name="eu-west-1")
    shape = client.meta.service_model.operation_model("CreateProcessingJob").input_shape
    report = ParamValidator().validate(args, shape)
    assert not report.has_errors(), report.generate_report()
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 4
    assert "fraud evaluate --shard auto" in args["AppSpecification"]["ContainerEntrypoint"][2]


TRAINING_FLAGS = [
    "--image-uri", JOB.image_uri, "--role-arn", JOB.role_arn, "--train-uri", JOB.train_uri,
    "--output-uri", JOB.output_uri, "--checkpoint-uri", JOB.checkpoint_uri,
    "--kms-key-arn", JOB.kms_key_arn, "--set", "max_epochs=20", "--set", "activation=silu",
]  # fmt: skip


def test_deploy_tune_creates_the_spot_tuning_job_once(
    moto_env: None, aws: AwsSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["deploy", "tune", "--job-name", "fraud-nn-grid", *TRAINING_FLAGS, "--max-parallel", "3"]
    assert run(argv, tmp_path) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["job"] == "fraud-nn-grid" and out["status"] == "Completed"
    described = client(aws, "sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="fraud-nn-grid"
    )
    config = described["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 3
    assert config["HyperParameterTuningJobObjective"]["MetricName"] == OBJECTIVE
    tuned = {r["Name"] for r in config["ParameterRanges"]["CategoricalParameterRanges"]}
    assert tuned == set(search_space(NN_CANDIDATES, DEFAULTS))
    definition = described["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["CheckpointConfig"]["S3Uri"] == JOB.checkpoint_uri
    assert definition["StaticHyperParameters"]["max_epochs"] == "20"
    # the job exists: followed, not created again (moto answers a second create ResourceInUse)
    assert run(argv, tmp_path) == 0
    assert json.loads(capsys.readouterr().out)["job"] == "fraud-nn-grid"


def test_tuning_and_evaluation_settings_are_refused_before_any_aws_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("FRAUD_AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    long_name = ["deploy", "tune", "--job-name", "x" * 33, *TRAINING_FLAGS]
    assert run(long_name, tmp_path) == 1
    assert "1 to 32 characters" in capsys.readouterr().err
    too_many = [
        "deploy", "evaluate", "--job-name", "e", "--image-uri", JOB.image_uri,
        "--role-arn", JOB.role_arn, "--data-uri", "s3://b/data/",
        "--model-uri", "s3://b/m/model.tar.gz", "--output-uri", "s3://b/shards/",
        "--kms-key-arn", JOB.kms_key_arn, "--instances", "13",
    ]  # fmt: skip
    assert run(too_many, tmp_path) == 1
    assert "13 instances for 12 runs" in capsys.readouterr().err


def test_deploy_evaluate_creates_the_sharded_processing_job(
    moto_env: None, aws: AwsSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sagemaker = client(aws, "sagemaker")
    argv = [
        "deploy", "evaluate", "--job-name", "fraud-prequential-cli",
        "--image-uri", JOB.image_uri, "--role-arn", JOB.role_arn,
        "--data-uri", "s3://b/data/", "--model-uri", "s3://b/models/job/output/model.tar.gz",
        "--output-uri", "s3://b/evaluation/shards/", "--kms-key-arn", JOB.kms_key_arn,
        "--instances", "3", "--folds", "3", "--seeds", "2",
    ]  # fmt: skip
    assert run(argv, tmp_path) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "Completed" and out["shards"] == "s3://b/evaluation/shards/"
    described = sagemaker.describe_processing_job(ProcessingJobName="fraud-prequential-cli")
    command = described["AppSpecification"]["ContainerEntrypoint"][2]
    assert "fraud evaluate --shard auto" in command
    assert "--folds 3 --seeds 2" in command
    assert {i["InputName"] for i in described["ProcessingInputs"]} == {"data", "model"}
    (output,) = described["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == "s3://b/evaluation/shards/"


def test_a_failed_evaluation_job_is_an_error_naming_its_reason() -> None:
    from deploy.errors import DeployError
    from deploy.evaluation_job import evaluate

    job = _evaluation_job("fraud-prequential-failed")
    sagemaker = boto3.client(
        "sagemaker", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    described = {
        "ProcessingJobName": job.name,
        "ProcessingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:processing-job/{job.name}",
        "ProcessingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: no transactions",
        "ProcessingResources": job.request()["ProcessingResources"],
        "AppSpecification": job.request()["AppSpecification"],
        "CreationTime": "2026-01-01T00:00:00Z",
    }
    with Stubber(sagemaker) as stub:
        for _ in range(3):
            stub.add_response("describe_processing_job", described)
        with pytest.raises(DeployError, match="Failed: AlgorithmError: no transactions"):
            evaluate(sagemaker, job, timeout_s=5, interval_s=0.01)
