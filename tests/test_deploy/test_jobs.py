"""Neo compilation and managed-spot training requests, submitted to moto's server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy.aws import client
from deploy.config import AwsSettings
from deploy.errors import SettingsError
from deploy.neo import compilation_request, compile_model
from deploy.training import TrainingJob, train

ROLE = "arn:aws:iam::123456789012:role/fraud-endpoint"


def _sent(sagemaker: Any, operation: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    sagemaker.meta.events.register(
        f"provide-client-params.sagemaker.{operation}", lambda params, **_: sent.append(params)
    )
    return sent


def test_neo_job_compiles_the_traced_pytorch_model_for_g4dn(aws: AwsSettings) -> None:
    sagemaker = client(aws, "sagemaker")
    sent = _sent(sagemaker, "CreateCompilationJob")
    request = compilation_request(
        "fraud-neo-g4dn", ROLE, "s3://b/neo/model.tar.gz", "s3://b/neo/out", "ml_g4dn"
    )
    result = compile_model(sagemaker, request, timeout_s=30, interval_s=0.1)
    assert result["status"] == "COMPLETED" and result["job"] == "fraud-neo-g4dn"
    (params,) = sent
    assert params["InputConfig"]["Framework"] == "PYTORCH"
    assert params["InputConfig"]["FrameworkVersion"] == "2.0"
    assert json.loads(params["InputConfig"]["DataInputConfig"]) == {"input0": [1, 15]}
    assert params["OutputConfig"] == {
        "S3OutputLocation": "s3://b/neo/out",
        "TargetDevice": "ml_g4dn",
    }
    job = sagemaker.describe_compilation_job(CompilationJobName="fraud-neo-g4dn")
    assert job["OutputConfig"]["TargetDevice"] == "ml_g4dn"
    compile_model(sagemaker, request, timeout_s=30, interval_s=0.1)  # idempotent: no new job
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("target", "version", "message"),
    [
        ("ml_inf1", "2.0", "not one of ml_g4dn, ml_p3"),
        ("ml_p3", "2.1", "up to 2.0 only"),
        ("ml_p3", "latest", "not MAJOR.MINOR"),
    ],
)
def test_neo_refuses_targets_and_pytorch_versions_it_cannot_compile(
    target: str, version: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        compilation_request("j", ROLE, "s3://b/m.tar.gz", "s3://b/out", target, version)


def test_spot_training_job_carries_checkpoints_and_max_wait(aws: AwsSettings) -> None:
    sagemaker = client(aws, "sagemaker")
    sent = _sent(sagemaker, "CreateTrainingJob")
    job = TrainingJob(
        name="fraud-train-1",
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud-train:1",
        role_arn=ROLE,
        train_uri="s3://b/data/",
        output_uri="s3://b/models/",
        checkpoint_uri="s3://b/checkpoints/fraud-train-1/",
        kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/k",
        max_runtime_s=3_600,
        max_wait_s=7_200,
        hyperparameters=(("max_epochs", "20"), ("n_members", "5")),
    )
    result = train(sagemaker, job, timeout_s=30, interval_s=0.1)
    assert result["status"] == "Completed"
    (params,) = sent
    assert params["EnableManagedSpotTraining"] is True
    assert params["CheckpointConfig"] == {
        "S3Uri": "s3://b/checkpoints/fraud-train-1/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert params["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3_600,
        "MaxWaitTimeInSeconds": 7_200,
    }
    assert params["HyperParameters"] == {"max_epochs": "20", "n_members": "5"}
    assert [c["ChannelName"] for c in params["InputDataConfig"]] == ["train"]
    described = sagemaker.describe_training_job(TrainingJobName="fraud-train-1")
    assert described["AlgorithmSpecification"]["TrainingImage"] == job.image_uri


def test_spot_training_refuses_a_max_wait_below_the_runtime() -> None:
    with pytest.raises(SettingsError, match="max wait 600 s is below the max runtime 3600 s"):
        TrainingJob("j", "img", ROLE, "s3://b/d", "s3://b/o", "s3://b/c", "k", max_wait_s=600)
