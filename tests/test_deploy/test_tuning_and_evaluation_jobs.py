"""Requests of the spot tuning job over ``fraud tune nn``'s space (botocore's Stubber: moto
has no tuning jobs; its grid holds every named candidate) and of the prequential evaluation
as one Processing job over N instances."""

from __future__ import annotations

import itertools

import boto3
from botocore.stub import Stubber

from deploy.training import TrainingJob
from deploy.tuning_job import OBJECTIVE, request, search_space
from model.hyperparameters import Hyperparameters
from model.tuning import NN_CANDIDATES

DEFAULTS = {k: str(v) if not isinstance(v, list) else ",".join(map(str, v))
            for k, v in Hyperparameters().to_json().items()}  # fmt: skip
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


def test_sharded_evaluation_job_is_a_valid_request_over_n_instances() -> None:
    from botocore.validate import ParamValidator

    from deploy.evaluation_job import EvaluationJob

    job = EvaluationJob(
        name="fraud-prequential",
        image_uri=JOB.image_uri,
        role_arn=JOB.role_arn,
        data_uri="s3://b/data/",
        model_uri="s3://b/models/candidates/job/output/model.tar.gz",
        output_uri="s3://b/evaluation/shards/",
        kms_key_arn=JOB.kms_key_arn,
        instances=4,
    )
    args = job.request()
    client = boto3.client("sagemaker", region_name="eu-west-1")
    shape = client.meta.service_model.operation_model("CreateProcessingJob").input_shape
    report = ParamValidator().validate(args, shape)
    assert not report.has_errors(), report.generate_report()
    assert args["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 4
    assert "fraud evaluate --shard auto" in args["AppSpecification"]["ContainerEntrypoint"][2]
