"""Build the model package: the directory SageMaker extracts into ``/opt/ml/model``.

Reading and checking a package (checksums, manifest digest, archive) lives in
``optimize.package_files``, which the server imports without this module's build stack.
Invariants:
- built in a temp directory beside the target and renamed into place: a half-built package
  never exists under the target name;
- one precision per package (``optimize.precision``): only its family's variants are
  packaged, with reference scores (``optimize.reference``) every served backend must meet;
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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.feature_names import FEATURE_NAMES
from model import model_dir
from model.network import FraudNet
from optimize import monitor_baseline, reference
from optimize.backends import candidates, discover
from optimize.errors import PackageError
from optimize.export import (
    FusedForm,
    check_parity,
    export_onnx,
    onnx_scores,
    torch_scores,
)
from optimize.guard import AP_TOLERANCE, MIN_DECISION_AGREEMENT, judge
from optimize.package_files import (
    BASELINE,
    FORMAT_VERSION,
    KERNEL_WEIGHTS,
    MANIFEST,
    THRESHOLDS,
    WEIGHTS,
    render_manifest,
    sha256,
    variant_file,
)
from optimize.precision import FAMILIES, PRECISIONS, SCORE_TOLERANCE, served_variants
from optimize.selection import BATCH_SIZES, select
from optimize.thresholds import choose_thresholds
from optimize.variants import BUILDERS


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


def _reference_rows(
    validation_x: np.ndarray, features: list[dict[str, Any]], seed: int, n: int = 512
) -> np.ndarray:
    """Rows for the load-time reference check: real validation rows (scores across the whole
    range) and rows drawn inside the features' training ranges."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(validation_x), size=min(n, len(validation_x)), replace=False)
    real = validation_x[pick]
    return np.concatenate([real, reference.plausible_rows(features, n, seed)]).astype(np.float32)


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
    precision: str = "fp32",
) -> dict[str, Any]:
    """Export (unless ``onnx_path`` is given), optimise, guard, time and write the package.

    ``precision`` is the package's one numeric contract (``optimize.precision``): only its
    family's variants are packaged and served; a reduced precision must pass the guard."""
    if precision not in FAMILIES:
        raise PackageError(f"precision {precision!r}; expected one of {PRECISIONS}")
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
        served = served_variants(precision, accepted)
        if not served:
            reason = guard.get(precision, {}).get("reason", "not built")
            raise PackageError(f"precision {precision} was asked for but failed: {reason}")
        for name in set(guard) - set(served):  # judged and recorded, not packaged
            (pkg / variant_file(name)).unlink(missing_ok=True)
        if "fused" in served:
            arrays = FusedForm(model).kernel_arrays()
            np.savez(pkg / KERNEL_WEIGHTS, **arrays)  # type: ignore[arg-type]  # numpy stubs
        ref_rows = _reference_rows(rows["validation_x"], description["features"], seed=3)
        ref_scores = (
            torch_scores(model, ref_rows)
            if precision == "fp32"
            else onnx_scores(pkg / variant_file(precision), ref_rows)
        )
        reference.write(pkg, ref_rows, ref_scores)
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
            "precision": precision,
            "score_tolerance": SCORE_TOLERANCE,
            "variants": {n: variant_file(n) for n in served},
            "seed": description["seed"],
            "git_commit": model_dir.git_commit(),
            "training_git_commit": description["git_commit"],
            "library_versions": model_dir.library_versions(),
            "runtimes": [vars(s) for s in discover()],
        }
        _write_json(pkg / MANIFEST, manifest)  # candidates() reads the network from it
        _, timings, failures = select(
            candidates(pkg, served, include_torch_cpu=True),
            len(FEATURE_NAMES),
            BATCH_SIZES,
            budget_s=timing_budget_s,
            check=reference.checker(pkg, BATCH_SIZES),
        )
        manifest["backend_timings"] = {
            "note": "measured at build, information only; the server re-times on its own hardware",
            "table": timings,
            "load_failures": failures,
        }
        model_files = sorted(variant_file(n) for n in served) + [WEIGHTS]
        model_files += [KERNEL_WEIGHTS] if "fused" in served else []
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
