"""The ``train`` executable: SageMaker's training-container contract.

Reads hyperparameters (all strings) from ``<root>/input/config/hyperparameters.json`` and
transactions from the ``train`` channel ``<root>/input/data/train``; writes the model to
``<root>/model``, checkpoints to ``<root>/checkpoints`` (synced with S3 on managed spot
training, so a restarted job resumes from the newest), the metrics to
``<root>/output/data/metrics.json``, and on failure the reason (first 1,024 characters) to
``<root>/output/failure`` with a non-zero exit. ``<root>`` is ``/opt/ml`` unless
``FRAUD_SAGEMAKER_ROOT`` relocates it (tests run it in a temp dir).

Under a HyperParameterTuningJob SageMaker adds ``_tuning_objective_metric`` to the
hyperparameters, and the SDK may add ``sagemaker_*`` keys (``sagemaker_program``,
``sagemaker_region``, ...): they are platform settings, logged and set aside, never model
settings; any other unknown key is still refused. The validation metrics are printed one
per line as ``validation:<metric>=<value>``, the lines ``METRIC_DEFINITIONS``' regexes read
(a tuning job's objective is one of them, e.g. ``validation:average_precision``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

from core.errors import FraudError
from model.errors import DataError, HyperparameterError

FAILURE_LIMIT_CHARS = 1024
TUNING_OBJECTIVE_KEY = "_tuning_objective_metric"
PLATFORM_PREFIX = "sagemaker_"
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")
METRIC_DEFINITIONS = [
    {"Name": f"validation:{m}", "Regex": f"validation:{m}=([0-9.eE+-]+)"} for m in METRICS
]


class TrainingInterrupted(FraudError):
    """SIGTERM arrived (spot reclaim or StopTrainingJob); the checkpoints allow a resume."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise TrainingInterrupted("stopped by SIGTERM; a rerun resumes from /opt/ml/checkpoints")


def read_hyperparameters(root: Path) -> dict[str, object]:
    path = root / "input" / "config" / "hyperparameters.json"
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise HyperparameterError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise HyperparameterError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    return raw


def split_platform_keys(raw: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(model hyperparameters, platform keys the tuner or the SDK added)."""
    platform = {
        k: v for k, v in raw.items() if k == TUNING_OBJECTIVE_KEY or k.startswith(PLATFORM_PREFIX)
    }
    return {k: v for k, v in raw.items() if k not in platform}, platform


def metric_lines(metrics: dict[str, object]) -> list[str]:
    return [f"validation:{m}={float(metrics[m]):.6f}" for m in METRICS if m in metrics]  # type: ignore[arg-type]


def run_training(root: Path) -> None:
    from model.dataset import read_transactions
    from model.hyperparameters import Hyperparameters
    from model.train import train_model

    model_keys, platform = split_platform_keys(read_hyperparameters(root))
    for key, value in sorted(platform.items()):
        print(f"train: platform hyperparameter {key}={value} (not a model setting)", flush=True)
    hp = Hyperparameters.from_strings(model_keys)
    channel = root / "input" / "data" / "train"
    if not channel.is_dir():
        raise DataError(f"channel 'train' is missing: expected transactions under {channel}")
    df = read_transactions(channel)
    description = train_model(df, hp, root / "model", root / "checkpoints", progress=False)
    out = root / "output" / "data"
    out.mkdir(parents=True, exist_ok=True)
    metrics = {"epochs": description["epochs"], **description["validation_metrics"]}  # type: ignore[dict-item]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({"validation_metrics": description["validation_metrics"]}))
    for line in metric_lines(description["validation_metrics"]):  # type: ignore[arg-type]
        print(line, flush=True)


def write_failure(root: Path, reason: str) -> None:
    path = root / "output" / "failure"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason[:FAILURE_LIMIT_CHARS])


def main() -> int:
    root = Path(os.environ.get("FRAUD_SAGEMAKER_ROOT", "/opt/ml"))
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_training(root)
    except FraudError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"train: error: {reason}", file=sys.stderr)
        write_failure(root, reason)
        return 1
    except Exception as exc:  # the failure file must be written whatever went wrong
        traceback.print_exc()
        write_failure(root, f"internal error {type(exc).__name__}: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
