"""``fraud deploy train``: a SageMaker training job on managed spot instances.

The image runs our ``train`` executable (model/sagemaker_train.py): hyperparameters as
strings, transactions in the ``train`` channel, checkpoints in /opt/ml/checkpoints synced to
``checkpoint_uri`` so a job restarted after a spot reclaim resumes from the newest one.
``MaxWaitTimeInSeconds`` bounds the whole job, waiting for spot capacity included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from deploy.aws import call, submit_and_follow
from deploy.errors import DeployError, SettingsError

CHECKPOINT_DIR = "/opt/ml/checkpoints"
DONE = {"Completed", "Failed", "Stopped"}


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    name: str
    image_uri: str
    role_arn: str
    train_uri: str  # s3:// prefix of the transactions (the ``train`` channel)
    output_uri: str
    checkpoint_uri: str
    kms_key_arn: str
    instance_type: str = "ml.g4dn.xlarge"
    max_runtime_s: int = 3_600
    max_wait_s: int = 7_200
    hyperparameters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for uri in (self.train_uri, self.output_uri, self.checkpoint_uri):
            if not uri.startswith("s3://"):
                raise SettingsError(f"{uri!r} is not an s3:// URI")
        if self.max_wait_s < self.max_runtime_s:
            raise SettingsError(
                f"max wait {self.max_wait_s} s is below the max runtime {self.max_runtime_s} s "
                "(spot training waits for capacity within max wait)"
            )

    def request(self) -> dict[str, Any]:
        return {
            "TrainingJobName": self.name,
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": "File",
            },
            "RoleArn": self.role_arn,
            "HyperParameters": dict(self.hyperparameters),  # all strings, as the contract says
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": self.train_uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": self.output_uri, "KmsKeyId": self.kms_key_arn},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition": {
                "MaxRuntimeInSeconds": self.max_runtime_s,
                "MaxWaitTimeInSeconds": self.max_wait_s,
            },
            "EnableManagedSpotTraining": True,
            "CheckpointConfig": {"S3Uri": self.checkpoint_uri, "LocalPath": CHECKPOINT_DIR},
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
        }


def train(
    sagemaker: Any, job: TrainingJob, timeout_s: float, interval_s: float = 60.0
) -> dict[str, Any]:
    """Submit the job unless it exists, then follow it to the end."""
    action = f"training job {job.name}"
    done = submit_and_follow(
        action,
        lambda: call(
            f"describe {action}", sagemaker.describe_training_job, TrainingJobName=job.name
        ),
        lambda: call(f"create {action}", sagemaker.create_training_job, **job.request()),
        "TrainingJobStatus",
        DONE,
        timeout_s,
        interval_s,
    )
    if done["TrainingJobStatus"] != "Completed":
        raise DeployError(f"{action} {done['TrainingJobStatus']}: {done.get('FailureReason')}")
    return {
        "job": job.name,
        "status": done["TrainingJobStatus"],
        "model": done.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "billable_s": done.get("BillableTimeInSeconds"),
        "training_s": done.get("TrainingTimeInSeconds"),
    }
