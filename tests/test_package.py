"""Export, variants, the guard, the package and its verifier, backends and selection."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from model import model_dir
from model.errors import ModelDirError
from model.network import FraudNet
from optimize import package, package_files
from optimize.backends import OrtBackend, TensorRTBackend, TorchBackend, discover
from optimize.buckets import bucket_for
from optimize.errors import (
    ChecksumError,
    ExportError,
    MissingFileError,
    PackageError,
    RuntimeUnavailable,
)
from optimize.export import FusedForm, export_onnx, onnx_scores, random_rows, torch_scores
from optimize.guard import judge
from optimize.precision import FAMILIES
from optimize.selection import pick, select
from optimize.thresholds import choose_thresholds, decide


@pytest.fixture(scope="module")
def trained(small_trained: Path) -> Path:
    return small_trained


@pytest.fixture(scope="module")
def built(small_package: Path) -> Path:
    return small_package


def test_package_has_the_sagemaker_layout(built: Path) -> None:
    names = {str(p.relative_to(built)) for p in built.rglob("*") if p.is_file()}
    assert set(package_files.REQUIRED) <= names
    manifest = package_files.verify(built)
    assert manifest["files"].keys() == names - {"manifest.json"}
    assert [f["name"] for f in manifest["features"]][:2] == ["amount", "is_weekend"]
    assert len(manifest["model_version"]) == 16
    assert (
        manifest["thresholds_version"]
        == json.loads((built / "thresholds.json").read_text())["version"]
    )
    for key in ("git_commit", "seed", "library_versions", "metrics", "guard", "backend_timings"):
        assert key in manifest


def test_fp32_graph_matches_pytorch_on_real_and_random_rows(trained: Path, built: Path) -> None:
    net, description = model_dir.load(trained)
    rows = model_dir.load_rows(trained)
    ranges = [(f["min"], f["max"]) for f in description["features"]]  # type: ignore[attr-defined]
    for x in (rows["validation_x"], random_rows(ranges, 2_000, seed=7)):
        diff = np.abs(torch_scores(net, x) - onnx_scores(built / "model.onnx", x))
        assert diff.max() <= 1e-5
    parity = json.loads((built / "manifest.json").read_text())["parity"]
    assert parity["real_max_abs_diff"] <= 1e-5 and parity["random_max_abs_diff"] <= 1e-5


def _random_net(hidden: list[int], members: int, activation: str) -> FraudNet:
    """An untrained network with random standardisation and calibration (all folded)."""
    torch.manual_seed(0)
    net = FraudNet(
        15, [0, 3, 4], [(0, 4), (0, 6)], hidden, n_members=members, activation=activation
    )
    n_inputs = 15 + 3 + 2
    net.center.copy_(torch.randn(n_inputs) * 3)
    net.scale.copy_(torch.rand(n_inputs) * 4 + 0.5)
    net.calib_slope.fill_(0.8)
    net.calib_intercept.fill_(-0.7)
    return net.eval()


@pytest.mark.parametrize(
    ("hidden", "members", "activation"),
    [([32, 16], 3, "silu"), ([32], 1, "relu"), ([16, 16, 8], 2, "relu")],
)
def test_fused_form_computes_the_network_within_the_fp32_limit(
    tmp_path: Path, hidden: list[int], members: int, activation: str
) -> None:
    net = _random_net(hidden, members, activation)
    path = tmp_path / "fused.onnx"
    export_onnx(net, path, FusedForm)
    x = random_rows([(0.0, 100.0)] * 15, 2_000, seed=3)
    x[:, 4] = 0.0  # a zero denominator: log1p(0) on one side of a ratio
    assert np.abs(torch_scores(net, x) - onnx_scores(path, x)).max() <= 1e-5
    # fewer nodes than the per-member form: what it is for
    plain = tmp_path / "plain.onnx"
    export_onnx(net, plain)
    assert len(onnx.load(str(path)).graph.node) < len(onnx.load(str(plain)).graph.node)


def test_fused_form_needs_a_hidden_layer(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least one hidden layer"):
        export_onnx(_random_net([], 2, "relu"), tmp_path / "fused.onnx", FusedForm)


def test_every_variant_is_judged_and_served_ones_passed(built: Path) -> None:
    manifest = package_files.verify(built)
    guard = manifest["guard"]["variants"]
    assert set(guard) == {"fused", "ort_opt", "fp16", "int8_dynamic", "int8_static"}
    family = FAMILIES[manifest["precision"]]
    for name, result in guard.items():
        assert result["reason"]
        served = name in manifest["variants"]
        assert served == (result["accepted"] and name in family), name
        assert (built / f"model.{name}.onnx").exists() == served


def test_the_guard_rejects_a_damaged_variant(trained: Path, built: Path, tmp_path: Path) -> None:
    graph = onnx.load(str(built / "model.onnx"))
    for init in graph.graph.initializer:  # damage every weight tensor by 30 %
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.ndim >= 2:
            init.CopyFrom(numpy_helper.from_array(array * 1.3, init.name))
    onnx.save(graph, str(tmp_path / "damaged.onnx"))
    rows = model_dir.load_rows(trained)
    thresholds = json.loads((built / "thresholds.json").read_text())
    reference = onnx_scores(built / "model.onnx", rows["validation_x"])
    damaged = onnx_scores(tmp_path / "damaged.onnx", rows["validation_x"])
    verdict = judge(damaged, reference, rows["validation_y"], thresholds)
    assert verdict["accepted"] is False
    assert "identical decisions" in str(verdict["reason"]) or "AP" in str(verdict["reason"])
    assert judge(reference, reference, rows["validation_y"], thresholds)["accepted"] is True


def test_verifier_catches_a_flipped_byte_in_every_file(built: Path, tmp_path: Path) -> None:
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert len(files) >= 6
    for rel in files:
        copy = tmp_path / str(rel).replace("/", "_")
        shutil.copytree(built, copy)
        data = bytearray((copy / rel).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / rel).write_bytes(bytes(data))
        with pytest.raises(PackageError, match=rel.name):
            package_files.verify(copy)


def test_verifier_names_a_missing_file(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "p"
    shutil.copytree(built, copy)
    (copy / "baseline" / "constraints.json").unlink()
    with pytest.raises(MissingFileError, match="constraints.json is missing"):
        package_files.verify(copy)


def test_package_round_trips_through_model_tar_gz(built: Path, tmp_path: Path) -> None:
    package_files.archive(built, tmp_path / "model.tar.gz")
    package_files.extract(tmp_path / "model.tar.gz", tmp_path / "opt_ml_model")
    manifest = package_files.verify(tmp_path / "opt_ml_model")
    assert manifest == package_files.verify(built)


def test_a_failed_build_leaves_nothing_that_looks_valid(trained: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx graph")
    out = tmp_path / "out" / "package"
    with pytest.raises(ExportError, match="garbage.onnx|model.onnx"):
        package.build_package(trained, out, onnx_path=garbage)
    assert list((tmp_path / "out").iterdir()) == []  # no target, no temp dir left behind

    broken = tmp_path / "trained"
    shutil.copytree(trained, broken)
    (broken / "rows.npz").unlink()
    with pytest.raises(ModelDirError, match="rows.npz is missing"):
        package.build_package(broken, out)
    assert not out.exists()


def test_baseline_files_follow_model_monitor_format(built: Path) -> None:
    stats = json.loads((built / "baseline" / "statistics.json").read_text())
    cons = json.loads((built / "baseline" / "constraints.json").read_text())
    n = stats["dataset"]["item_count"]
    assert n > 0 and len(stats["features"]) == 15
    for feature in stats["features"]:
        num = feature["numerical_statistics"]
        assert feature["inferred_type"] in {"Integral", "Fractional"}
        assert num["common"]["num_present"] + num["common"]["num_missing"] == n
        assert num["min"] <= num["mean"] <= num["max"]
        buckets = num["distribution"]["kll"]["buckets"]
        assert sum(b["count"] for b in buckets) == num["common"]["num_present"]
    by_name = {f["name"]: f for f in cons["features"]}
    assert by_name["customer_count_1d"]["inferred_type"] == "Integral"
    assert by_name["amount"]["num_constraints"]["is_non_negative"] is True
    assert all(f["completeness"] == 1.0 for f in cons["features"])
    dist = cons["monitoring_config"]["distribution_constraints"]
    assert dist["comparison_threshold"] == 0.1


def test_backend_discovery_reports_absent_gpu_runtimes_with_reasons() -> None:
    status = {s.name: s for s in discover()}
    assert status["ort-cpu"].available and status["ort-cpu"].verified_on_hardware
    for name in ("ort-cuda", "ort-tensorrt", "tensorrt"):
        assert status[name].verified_on_hardware is False
        if not status[name].available:
            assert "not installed" in status[name].reason
    if not status["tensorrt"].available:
        with pytest.raises(RuntimeUnavailable, match="tensorrt"):
            TensorRTBackend(Path("model.onnx")).load()
    if not status["ort-cuda"].available:
        with pytest.raises(RuntimeUnavailable, match="CUDAExecutionProvider"):
            OrtBackend(Path("model.onnx"), "CUDAExecutionProvider").load()


def test_backends_agree_on_the_packaged_model(built: Path) -> None:
    manifest = package_files.verify(built)
    x = random_rows([(f["min"], f["max"]) for f in manifest["features"]], 256)
    torch_backend = TorchBackend(built / "model.pt", manifest["network"])
    torch_backend.load()
    reference = torch_backend.predict(x)
    for variant, file in manifest["variants"].items():
        backend = OrtBackend(built / file)
        backend.load()
        tolerance = 1e-5 if variant in {"fp32", "fused", "ort_opt"} else 0.2
        assert np.abs(backend.predict(x) - reference).max() <= tolerance, variant


class _Fake:
    """Takes ``us_per_row`` per row plus ``fixed_us``: tests selection without a runtime."""

    def __init__(self, name: str, fixed_us: float, us_per_row: float) -> None:
        self.name, self.fixed_us, self.us_per_row = name, fixed_us, us_per_row

    def load(self) -> None:
        pass

    def predict(self, x: np.ndarray) -> np.ndarray:
        end = time.perf_counter() + (self.fixed_us + self.us_per_row * len(x)) / 1e6
        while time.perf_counter() < end:
            pass
        return np.zeros(len(x), dtype=np.float32)


def test_selection_picks_the_faster_backend_per_bucket() -> None:
    low_latency = _Fake("low-latency", fixed_us=20, us_per_row=2.0)
    high_throughput = _Fake("high-throughput", fixed_us=400, us_per_row=0.1)
    chosen, timings, failures = select(
        [low_latency, high_throughput], 15, (1, 8, 4_096), budget_s=0.02
    )
    assert chosen[1] is low_latency and chosen[8] is low_latency
    assert chosen[4_096] is high_throughput
    assert failures == {}
    assert pick({"a": {1: {"p50_us": 5.0}}, "b": {1: {"p50_us": 3.0}}}) == {1: "b"}


def test_a_backend_that_cannot_load_is_reported_not_fatal() -> None:
    broken = OrtBackend(Path("/nonexistent/model.onnx"), name="broken")
    chosen, _, failures = select([broken, _Fake("ok", 1, 0)], 15, (1,), budget_s=0.01)
    assert chosen[1].name == "ok"
    assert "broken" in failures


def test_bucket_for_rounds_up_to_the_next_timed_size() -> None:
    assert [bucket_for(b, (1, 8, 64)) for b in (1, 2, 8, 9, 64, 1_000)] == [1, 8, 8, 64, 64, 64]


def test_thresholds_give_decline_review_approve_bands() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(50_000) < 0.01).astype(int)
    scores = np.clip(labels * 0.6 + rng.random(50_000) * 0.5, 0, 1)
    t = choose_thresholds(scores, labels, decline_precision=0.9, review_share=0.02)
    bands = t["bands"]
    assert bands["review"] <= bands["decline"]  # type: ignore[index]
    assert t["chosen_on"]["bands"]["decline"]["precision"] >= 0.9  # type: ignore[index]
    decisions = decide(np.array([0.0, bands["review"], bands["decline"]]), t)  # type: ignore[index]
    assert decisions.tolist() == [2, 1, 0]


def test_a_tampered_manifest_is_refused(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "p"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parity"]["real_max_abs_diff"] = 0.0
    (copy / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    with pytest.raises(ChecksumError, match="own digest"):
        package_files.verify(copy)
