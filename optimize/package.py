"""Build, verify and archive the model package: the directory SageMaker extracts into
``/opt/ml/model`` (DESIGN 1, "The model package").

Invariants:
- built in a temp directory beside the target and renamed into place: a half-built package
  never exists under the target name;
- ``manifest.json`` lists the SHA-256 of every other file, and carries its own digest
  (``manifest_sha256``, over its canonical rendering without that field): one flipped byte
  in any file makes :func:`verify` fail and name the file;
- ``model_version`` hashes the model files only (graphs and weights), so new thresholds or
  new measurements do not change it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.feature_names import FEATURE_NAMES
from model import model_dir
from model.network import FraudNet
from optimize import monitor_baseline
from optimize.backends import candidates, discover
from optimize.errors import ChecksumError, MissingFileError, PackageError
from optimize.export import (
    FusedForm,
    check_parity,
    export_onnx,
    onnx_scores,
    random_rows,
    torch_scores,
)
from optimize.guard import AP_TOLERANCE, MIN_DECISION_AGREEMENT, judge
from optimize.selection import BATCH_SIZES, select
from optimize.thresholds import choose_thresholds
from optimize.variants import BUILDERS, variant_file

FORMAT_VERSION = 1
MANIFEST, THRESHOLDS = "manifest.json", "thresholds.json"
WEIGHTS = "model.pt"
BASELINE = ("baseline/statistics.json", "baseline/constraints.json")
REQUIRED = (MANIFEST, THRESHOLDS, "model.onnx", WEIGHTS, *BASELINE)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_manifest(manifest: dict[str, Any]) -> str:
    """Canonical text of a manifest, with its own digest as the last field."""
    # round-trip first so non-string keys (batch sizes) render as they will read back
    body = json.loads(json.dumps({k: v for k, v in manifest.items() if k != "manifest_sha256"}))
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, indent=2).encode()).hexdigest()
    return json.dumps({**body, "manifest_sha256": digest}, sort_keys=True, indent=2) + "\n"


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _feature_ranges(description: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(f["min"]), float(f["max"])) for f in description["features"]]


def _build_fused(
    model: FraudNet,
    ranges: list[tuple[float, float]],
    src: Path,
    dst: Path,
    calibration_x: np.ndarray,
) -> None:
    """The ``fused`` variant: FusedForm exported from the network itself (not derived from
    ``src``), held to the same fp32 parity limit against PyTorch as model.onnx."""
    export_onnx(model, dst, FusedForm)
    check_parity(model, dst, calibration_x, ranges)


def _build_variants(
    pkg: Path,
    rows: dict[str, np.ndarray],
    reference: np.ndarray,
    thresholds: dict[str, object],
    seed: int,
    builders: dict[str, Callable[[Path, Path, np.ndarray], None]],
) -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(seed)
    train_x = rows["training_x"]
    calibration_x = train_x[rng.choice(len(train_x), size=min(2_000, len(train_x)), replace=False)]
    guard: dict[str, dict[str, object]] = {}
    for name, build in builders.items():
        path = pkg / variant_file(name)
        try:
            build(pkg / "model.onnx", path, calibration_x)
            scores = onnx_scores(path, rows["validation_x"])
        except Exception as exc:  # a variant that cannot build or run is rejected, not fatal
            path.unlink(missing_ok=True)
            guard[name] = {"accepted": False, "reason": f"build or load failed: {exc}"[:500]}
            continue
        guard[name] = judge(scores, reference, rows["validation_y"], thresholds)
        if not guard[name]["accepted"]:
            path.unlink()
    return guard


def build_package(
    trained_dir: Path,
    out_dir: Path,
    onnx_path: Path | None = None,
    timing_budget_s: float = 0.1,
) -> dict[str, Any]:
    """Export (unless ``onnx_path`` is given), optimise, guard, time and write the package."""
    model, loaded = model_dir.load(trained_dir)
    description: dict[str, Any] = dict(loaded)
    rows = model_dir.load_rows(trained_dir)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    pkg = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    pkg.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    try:
        if onnx_path is None:
            export_onnx(model, pkg / "model.onnx")
        else:
            shutil.copyfile(onnx_path, pkg / "model.onnx")
        torch.save(model.state_dict(), pkg / WEIGHTS)

        parity_report = check_parity(
            model, pkg / "model.onnx", rows["validation_x"], _feature_ranges(description)
        )
        fp32 = onnx_scores(pkg / "model.onnx", rows["validation_x"])
        thresholds = choose_thresholds(rows["validation_scores"], rows["validation_y"])
        _write_json(pkg / THRESHOLDS, thresholds)
        fused = functools.partial(_build_fused, model, _feature_ranges(description))
        guard = _build_variants(
            pkg, rows, fp32, thresholds, int(description["seed"]), {"fused": fused, **BUILDERS}
        )
        _write_json(
            pkg / BASELINE[0], monitor_baseline.statistics(rows["training_x"], FEATURE_NAMES)
        )
        _write_json(
            pkg / BASELINE[1], monitor_baseline.constraints(rows["training_x"], FEATURE_NAMES)
        )

        accepted = ["fp32", *[n for n, g in guard.items() if g["accepted"]]]
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "features": description["features"],
            "input": {
                "name": "features",
                "shape": ["batch", len(FEATURE_NAMES)],
                "dtype": "float32",
            },
            "output": description["output"],
            "network": description["network"],
            "calibration": description["calibration"],
            "metrics": {"validation": description["validation_metrics"]},
            "thresholds_version": thresholds["version"],
            "parity": parity_report,
            "guard": {
                "limits": {
                    "ap_tolerance": AP_TOLERANCE,
                    "min_decision_agreement": MIN_DECISION_AGREEMENT,
                },
                "variants": guard,
            },
            "variants": {n: variant_file(n) for n in accepted},
            "seed": description["seed"],
            "git_commit": model_dir.git_commit(),
            "training_git_commit": description["git_commit"],
            "library_versions": model_dir.library_versions(),
            "runtimes": [vars(s) for s in discover()],
        }
        _write_json(pkg / MANIFEST, manifest)  # candidates() reads the network from it
        _, timings, failures = select(
            candidates(pkg, accepted), len(FEATURE_NAMES), BATCH_SIZES, budget_s=timing_budget_s
        )
        manifest["backend_timings"] = {
            "note": "measured at build, information only; the server re-times on its own hardware",
            "table": timings,
            "load_failures": failures,
        }
        model_files = sorted(variant_file(n) for n in accepted) + [WEIGHTS]
        manifest["files"] = {
            str(p.relative_to(pkg)): sha256(p)
            for p in sorted(pkg.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        manifest["model_version"] = hashlib.sha256(
            "".join(manifest["files"][f] for f in model_files).encode()
        ).hexdigest()[:16]
        (pkg / MANIFEST).write_text(render_manifest(manifest))
        _replace_dir(pkg, out_dir)
    except BaseException:
        shutil.rmtree(pkg, ignore_errors=True)
        raise
    return manifest


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def read_manifest(pkg: Path) -> dict[str, Any]:
    path = Path(pkg) / MANIFEST
    if not path.exists():
        raise MissingFileError(f"{path} is missing: not a model package")
    text = path.read_text(errors="replace")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChecksumError(f"{path} is not valid JSON ({exc}): damaged") from exc
    if not isinstance(manifest, dict) or render_manifest(manifest) != text:
        raise ChecksumError(f"{path} does not match its own digest: damaged or edited")
    return manifest


def verify(pkg: Path, rerun_parity: bool = True) -> dict[str, Any]:
    """Check the package; raise PackageError naming the first problem found."""
    pkg = Path(pkg)
    manifest = read_manifest(pkg)
    for name in REQUIRED:
        if not (pkg / name).is_file():
            raise MissingFileError(f"{pkg / name} is missing")
    files: dict[str, str] = manifest.get("files", {})
    for name in REQUIRED[1:]:
        if name not in files:
            raise ChecksumError(f"{MANIFEST} lists no checksum for {name}")
    for name, digest in files.items():
        path = pkg / name
        if not path.is_file():
            raise MissingFileError(f"{path} is listed in {MANIFEST} but missing")
        if sha256(path) != digest:
            raise ChecksumError(f"{path} does not match its SHA-256 in {MANIFEST}")
    for name, file in manifest["variants"].items():
        if file not in files:
            raise ChecksumError(f"variant {name} ({file}) has no checksum in {MANIFEST}")
    p = manifest["parity"]
    if max(p["real_max_abs_diff"], p["random_max_abs_diff"]) > p["limit"]:
        raise PackageError(f"recorded fp32 parity exceeds {p['limit']}")
    for name in manifest["variants"]:
        if name != "fp32" and not manifest["guard"]["variants"][name]["accepted"]:
            raise PackageError(f"variant {name} is served but failed the guard")
    if rerun_parity:
        _rerun_parity(pkg, manifest)
    return manifest


def _rerun_parity(pkg: Path, manifest: dict[str, Any]) -> None:
    from model.network import from_description

    net = from_description(manifest["network"], pkg / WEIGHTS)
    x = random_rows([(f["min"], f["max"]) for f in manifest["features"]], 1_024, seed=1)
    diff = float(np.max(np.abs(torch_scores(net, x) - onnx_scores(pkg / "model.onnx", x))))
    if diff > manifest["parity"]["limit"]:
        raise PackageError(f"model.onnx and model.pt disagree by {diff:.3g} on random rows")


def archive(pkg: Path, tar_path: Path) -> None:
    """``model.tar.gz`` with the package files at its root, as SageMaker expects."""
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(Path(pkg).rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(pkg)))
    os.replace(tmp, tar_path)


def extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:gz") as tar:
        tar.extractall(dest, filter="data")
