"""The prequential evaluation as one SageMaker Processing job over N instances.

Each instance runs ``fraud evaluate --shard auto``: its place among the job's hosts
(``/opt/ml/config/resourceconfig.json``) picks its share of the fold x seed runs, and it
writes ``shard-K-of-N.json`` to the job's output prefix. ``fraud evaluate --shard-runs``
on those files gives the result of one unsharded run. Inputs: the transaction history
(every instance gets all of it) and the trained model's ``model.tar.gz`` (the training
job's output), unpacked before the run.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from deploy.aws import call, submit_and_follow
from deploy.errors import DeployError, SettingsError

BASE = "/opt/ml/processing"
DONE = {"Completed", "Failed", "Stopped"}


@dataclasses.dataclass(frozen=True)
class EvaluationJob:
    name: str
    image_uri: str
    role_arn: str
    data_uri: str  # s3:// prefix of the transactions
    model_uri: str  # s3:// URI of the training job's model.tar.gz
    output_uri: str  # s3:// prefix for the shard files
    kms_key_arn: str
    instances: int = 4
    folds: int = 4
    seeds: int = 3
    instance_type: str = "ml.c5.2xlarge"
    max_runtime_s: int = 14_400

    def __post_init__(self) -> None:
        for uri in (self.data_uri, self.model_uri, self.output_uri):
            if not uri.startswith("s3://"):
                raise SettingsError(f"{uri!r} is not an s3:// URI")
        if self.instances < 1 or self.instances > self.folds * self.seeds:
            raise SettingsError(
                f"{self.instances} instances for {self.folds * self.seeds} runs: "
                "expected 1 to one instance per run"
            )

    def command(self) -> str:
        evaluate = [
            "fraud", "evaluate", "--shard", "auto", "--quiet",
            "--data", f"{BASE}/input/data", "--model", f"{BASE}/model",
            "--out", f"{BASE}/output", "--folds", str(self.folds), "--seeds", str(self.seeds),
        ]  # fmt: skip
        return (
            f"set -e; mkdir -p {BASE}/model; "
            f"tar -xzf {BASE}/input/model/model.tar.gz -C {BASE}/model; " + shlex.join(evaluate)
        )

    def request(self) -> dict[str, Any]:
        def s3_input(name: str, uri: str) -> dict[str, Any]:
            return {
                "InputName": name,
                "S3Input": {
                    "S3Uri": uri,
                    "LocalPath": f"{BASE}/input/{name}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }

        return {
            "ProcessingJobName": self.name,
            "RoleArn": self.role_arn,
            "AppSpecification": {
                "ImageUri": self.image_uri,
                "ContainerEntrypoint": ["/bin/sh", "-c", self.command()],
            },
            "ProcessingInputs": [
                s3_input("data", self.data_uri),
                s3_input("model", self.model_uri),
            ],
            "ProcessingOutputConfig": {
                "KmsKeyId": self.kms_key_arn,
                "Outputs": [
                    {
                        "OutputName": "shards",
                        "S3Output": {
                            "S3Uri": self.output_uri,
                            "LocalPath": f"{BASE}/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ],
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": self.instances,
                    "InstanceType": self.instance_type,
                    "VolumeSizeInGB": 30,
                    "VolumeKmsKeyId": self.kms_key_arn,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_s},
            "NetworkConfig": {"EnableNetworkIsolation": True},
        }


def evaluate(
    sagemaker: Any, job: EvaluationJob, timeout_s: float, interval_s: float = 60.0
) -> dict[str, Any]:
    """Submit the Processing job unless it exists, follow it to the end; where its shard
    files are and the command that merges them."""
    action = f"processing job {job.name}"
    done = submit_and_follow(
        action,
        lambda: call(
            f"describe {action}", sagemaker.describe_processing_job, ProcessingJobName=job.name
        ),
        lambda: call(f"create {action}", sagemaker.create_processing_job, **job.request()),
        "ProcessingJobStatus",
        DONE,
        timeout_s,
        interval_s,
    )
    status = done["ProcessingJobStatus"]
    if status != "Completed":
        raise DeployError(f"{action} {status}: {done.get('FailureReason')}")
    return {
        "job": job.name,
        "status": status,
        "instances": job.instances,
        "shards": job.output_uri,
        "merge": "fraud evaluate --shard-runs FILE, once per shard-K-of-N.json under shards",
    }
