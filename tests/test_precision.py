"""One numeric contract per package: the same row gets the same score in any batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from optimize import package_files, reference
from optimize.errors import PackageError
from optimize.package import build_package
from optimize.precision import SCORE_TOLERANCE, served_variants
from optimize.selection import BATCH_SIZES
from serving.scorer import Scorer


def test_an_fp32_package_serves_only_the_fp32_family(small_package: Path) -> None:
    manifest = package_files.verify(small_package)
    assert manifest["precision"] == "fp32"
    assert set(manifest["variants"]) <= {"fp32", "ort_opt", "fused"}
    assert served_variants("fp32", ["fp32", "fp16", "int8_dynamic", "fused"]) == ["fp32", "fused"]


def test_every_picked_backend_scores_a_row_alike_alone_and_in_every_bucket(
    small_package: Path,
) -> None:
    scorer = Scorer(small_package, thread_options=[1], timing_budget_s=0.005)
    scorer.load()
    rows, expected = reference.load(small_package)
    picked = {b.name: b for b in scorer._by_bucket.values()}
    assert picked
    for backend in picked.values():
        assert reference.max_diff(backend, rows, expected, BATCH_SIZES) <= SCORE_TOLERANCE
    # through the scorer: each row alone against the same rows in one large batch
    alone = np.array([scorer.score(rows[i : i + 1])[0] for i in range(64)])
    together = scorer.score(rows)[:64]
    assert np.abs(alone - together).max() <= SCORE_TOLERANCE
    assert np.abs(together - expected[:64]).max() <= SCORE_TOLERANCE


def test_a_backend_that_strays_from_the_reference_is_refused(small_package: Path) -> None:
    scorer = Scorer(small_package, thread_options=[1], timing_budget_s=0.005)
    scorer.load()
    backend = scorer._by_bucket[1]
    rows, expected = reference.load(small_package)
    with pytest.raises(PackageError, match="differ from the package reference"):
        reference.check(backend, rows, expected + 1e-4, BATCH_SIZES, SCORE_TOLERANCE)


def test_a_batch_dependent_precision_cannot_be_asked_for(
    small_trained: Path, tmp_path: Path
) -> None:
    with pytest.raises(PackageError, match="int8_dynamic"):
        build_package(small_trained, tmp_path / "pkg", precision="int8_dynamic")


def test_the_verifier_refuses_a_variant_outside_the_precision(
    small_package: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "pkg"
    shutil.copytree(small_package, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["variants"]["fp16"] = "model.fp16.onnx"
    manifest["files"]["model.fp16.onnx"] = package_files.sha256(copy / "model.onnx")
    shutil.copyfile(copy / "model.onnx", copy / "model.fp16.onnx")
    (copy / "manifest.json").write_text(package_files.render_manifest(manifest))
    with pytest.raises(PackageError, match="not of the package's precision fp32"):
        package_files.verify(copy)
