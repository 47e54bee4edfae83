"""``fraud deploy neo``: submit and follow a SageMaker Neo compilation job.

Neo's cloud compiler takes PyTorch up to 2.0 and an ONNX support too old for our graphs
(ONNX 1.7, image models), so the input is a ``model.tar.gz`` holding a TorchScript
``model.pth`` traced with a float32 example of shape (batch, 15) under PyTorch <= 2.0
(deploy/README.md says how to produce it). Targets in scope: ml_g4dn (T4) and ml_p3 (V100).
"""

from __future__ import annotations

import json
from typing import Any

from deploy.aws import call, wait_until
from deploy.errors import DeployError, SettingsError

TARGETS = ("ml_g4dn", "ml_p3")
MAX_PYTORCH = (2, 0)
N_FEATURES = 15
DONE = {"COMPLETED", "FAILED", "STOPPED"}


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in text.split(".")[:2])
    except ValueError as exc:
        raise SettingsError(f"framework version {text!r} is not MAJOR.MINOR") from exc
    return major, minor


def compilation_request(
    job_name: str,
    role_arn: str,
    model_uri: str,
    output_uri: str,
    target: str,
    framework_version: str = "2.0",
    max_batch: int = 1,
    max_runtime_s: int = 900,
) -> dict[str, Any]:
    """Checked before any AWS call: target, PyTorch version, S3 URIs."""
    if target not in TARGETS:
        raise SettingsError(f"Neo target {target!r} is not one of {', '.join(TARGETS)}")
    if _version(framework_version) > MAX_PYTORCH:
        raise SettingsError(
            f"PyTorch {framework_version}: Neo compiles PyTorch up to 2.0 only; "
            "trace the model under torch<=2.0 (deploy/README.md)"
        )
    for uri in (model_uri, output_uri):
        if not uri.startswith("s3://"):
            raise SettingsError(f"{uri!r} is not an s3:// URI")
    if not model_uri.endswith(".tar.gz"):
        raise SettingsError(f"{model_uri!r}: Neo takes a .tar.gz holding the traced model")
    return {
        "CompilationJobName": job_name,
        "RoleArn": role_arn,
        "InputConfig": {
            "S3Uri": model_uri,
            # input name -> shape; a traced model's input is positional: input0
            "DataInputConfig": json.dumps({"input0": [max_batch, N_FEATURES]}),
            "Framework": "PYTORCH",
            "FrameworkVersion": framework_version,
        },
        "OutputConfig": {"S3OutputLocation": output_uri, "TargetDevice": target},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
    }


def compile_model(
    sagemaker: Any, request: dict[str, Any], timeout_s: float, interval_s: float = 30.0
) -> dict[str, Any]:
    """Submit (unless a job of that name exists) and follow it to the end."""
    name = request["CompilationJobName"]
    existing = call(
        "list compilation jobs", sagemaker.list_compilation_jobs, NameContains=name
    ).get("CompilationJobSummaries", [])
    if not any(job["CompilationJobName"] == name for job in existing):
        call(f"create compilation job {name}", sagemaker.create_compilation_job, **request)

    def describe() -> dict[str, Any]:
        return call(
            f"describe compilation job {name}",
            sagemaker.describe_compilation_job,
            CompilationJobName=name,
        )

    wait_until(
        f"compilation job {name}",
        lambda: str(describe()["CompilationJobStatus"]),
        DONE,
        timeout_s,
        interval_s,
    )
    job = describe()
    if job["CompilationJobStatus"] != "COMPLETED":
        raise DeployError(
            f"compilation job {name} {job['CompilationJobStatus']}: {job.get('FailureReason')}"
        )
    return {
        "job": name,
        "status": job["CompilationJobStatus"],
        "artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "target": job.get("OutputConfig", {}).get("TargetDevice"),
    }
