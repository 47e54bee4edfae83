"""A managed-spot HyperParameterTuningJob over ``fraud tune nn``'s search space.

The training definition is ``fraud deploy train``'s job (deploy/training.py: our image's
``train``, spot capacity, checkpoints, network isolation) with ``train``'s metric lines as
MetricDefinitions; the tuner writes ``_tuning_objective_metric`` into the hyperparameters,
which ``train`` accepts. The search space is every value ``model/tuning.py``'s NN
candidates try, one categorical range per hyperparameter, searched as a grid (it holds each
named candidate and their combinations). The objective is the validation run's average
precision (the validation week, never the test week).
"""

from __future__ import annotations

from typing import Any

from deploy.aws import call, submit_and_follow
from deploy.errors import DeployError, SettingsError
from deploy.training import TrainingJob
from model.sagemaker_train import METRIC_DEFINITIONS

OBJECTIVE = "validation:average_precision"
NAME_LIMIT = 32
DONE = {"Completed", "Failed", "Stopped"}
JOB_ONLY = ("TrainingJobName", "HyperParameters", "AlgorithmSpecification", "ResourceConfig")


def search_space(
    candidates: dict[str, dict[str, str]], defaults: dict[str, str]
) -> dict[str, list[str]]:
    """{hyperparameter: values}: each candidate's overrides plus the default they replace."""
    names = sorted({k for overrides in candidates.values() for k in overrides})
    return {
        name: sorted({defaults[name]} | {o[name] for o in candidates.values() if name in o})
        for name in names
    }


def default_strings() -> dict[str, str]:
    """``Hyperparameters()``'s values as the strings a training job receives."""
    from model.hyperparameters import Hyperparameters

    return {
        k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
        for k, v in Hyperparameters().to_json().items()
    }


def request(
    name: str, job: TrainingJob, defaults: dict[str, str], max_parallel: int = 2
) -> dict[str, Any]:
    """CreateHyperParameterTuningJob arguments (``name``: at most 32 characters)."""
    if not 1 <= len(name) <= NAME_LIMIT:
        raise SettingsError(f"tuning job name {name!r}: 1 to {NAME_LIMIT} characters")
    if max_parallel < 1:
        raise SettingsError(f"max parallel training jobs {max_parallel}: at least 1")
    from model.tuning import NN_CANDIDATES  # the training stack: only when a job is built

    space = search_space(NN_CANDIDATES, defaults)
    training = {k: v for k, v in job.request().items() if k not in JOB_ONLY}
    static = {k: v for k, v in job.hyperparameters if k not in space}
    spec = job.request()["AlgorithmSpecification"]
    resources = job.request()["ResourceConfig"]
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Grid",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
            "ResourceLimits": {"MaxParallelTrainingJobs": max_parallel},
            "ParameterRanges": {
                "CategoricalParameterRanges": [
                    {"Name": k, "Values": values} for k, values in space.items()
                ]
            },
        },
        "TrainingJobDefinition": {
            **training,
            "StaticHyperParameters": static,
            "AlgorithmSpecification": {**spec, "MetricDefinitions": METRIC_DEFINITIONS},
            "ResourceConfig": resources,
        },
    }


def tune(
    sagemaker: Any,
    name: str,
    job: TrainingJob,
    max_parallel: int,
    timeout_s: float,
    interval_s: float = 60.0,
) -> dict[str, Any]:
    """Submit the tuning job unless it exists, follow it to the end; its best training job."""
    args = request(name, job, default_strings(), max_parallel)
    action = f"tuning job {name}"
    done = submit_and_follow(
        action,
        lambda: call(
            f"describe {action}",
            sagemaker.describe_hyper_parameter_tuning_job,
            HyperParameterTuningJobName=name,
        ),
        lambda: call(f"create {action}", sagemaker.create_hyper_parameter_tuning_job, **args),
        "HyperParameterTuningJobStatus",
        DONE,
        timeout_s,
        interval_s,
    )
    status = done["HyperParameterTuningJobStatus"]
    if status != "Completed":
        raise DeployError(f"{action} {status}: {done.get('FailureReason')}")
    best = done.get("BestTrainingJob", {})
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
    return {
        "job": name,
        "status": status,
        "training_jobs": done.get("TrainingJobStatusCounters"),
        "best_training_job": best.get("TrainingJobName"),
        "best_hyperparameters": best.get("TunedHyperParameters"),
        "objective": {objective.get("MetricName", OBJECTIVE): objective.get("Value")},
    }
