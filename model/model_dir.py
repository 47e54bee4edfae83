"""The trained-model directory: weights plus a JSON description, written atomically.

Layout::

    model.pt     state dict of model.network.FraudNet (load with weights_only=True)
    rows.npz     validation-week features, labels and the validation-run model's calibrated
                 scores; a sample of training rows (what the optimize stage guards with)
    model.json   network config, features with training ranges, calibration, metrics,
                 hyperparameters, seed, git commit, library versions, training window

Each file is written under a temp name and renamed, ``model.json`` last: a directory without
it is not a model, so a half-written one never looks valid.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from model.errors import ModelDirError
from model.network import FraudNet, from_description

WEIGHTS_FILE = "model.pt"
ROWS_FILE = "rows.npz"
DESCRIPTION_FILE = "model.json"
_LIBRARIES = ("torch", "numpy", "pandas", "scikit-learn", "xgboost-cpu", "pyarrow")


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd or Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]


def save(
    model: FraudNet,
    description: dict[str, object],
    out_dir: Path,
    arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Write weights, then the description: a directory without ``model.json`` is not a model,
    so an interrupted save never looks valid. The directory itself is kept (it may be a
    mount point such as SageMaker's /opt/ml/model)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DESCRIPTION_FILE).unlink(missing_ok=True)
    _write_atomic(out_dir / WEIGHTS_FILE, lambda p: torch.save(model.state_dict(), p))
    if arrays is not None:
        _write_atomic(out_dir / ROWS_FILE, lambda p: _save_arrays(p, arrays))
    text = json.dumps(description, indent=2) + "\n"
    _write_atomic(out_dir / DESCRIPTION_FILE, lambda p: p.write_text(text))


def read_description(model_dir: Path) -> dict[str, object]:
    path = Path(model_dir) / DESCRIPTION_FILE
    if not path.exists():
        raise ModelDirError(f"{path} is missing: not a trained model directory")
    try:
        return dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path} is not valid JSON: {exc}") from exc


def load(model_dir: Path) -> tuple[FraudNet, dict[str, object]]:
    """Rebuild the network from its config and load the weights (weights_only=True)."""
    description = read_description(model_dir)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.exists():
        raise ModelDirError(f"{weights} is missing: the model directory holds no weights")
    try:
        model = from_description(description["network"], weights)  # type: ignore[arg-type]
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModelDirError(f"{weights} cannot be loaded into FraudNet: {exc}") from exc
    return model, description


def load_rows(model_dir: Path) -> dict[str, np.ndarray]:
    path = Path(model_dir) / ROWS_FILE
    if not path.exists():
        raise ModelDirError(f"{path} is missing: retrain with this version of fraud train")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
