"""torch-cuda: buckets, padding, slicing and chunking against fp32 PyTorch, and its fallbacks.

The CPU tests run the backend with ``device="cpu"`` (an eager call in place of the graph,
through the same buffers and plans). Tests marked ``gpu`` need CUDA and run in
``benchmarks/gpu_check.sh``; elsewhere they skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from optimize.backends import TorchBackend, candidates, discover
from optimize.errors import RuntimeUnavailable
from optimize.export import random_rows
from optimize.selection import select
from optimize.torch_cuda import (
    MAX_ABS_DIFF,
    NO_CUDA_REASON,
    ParityGuard,
    TorchCudaBackend,
    compare,
    package_guard,
    unsupported_reason,
)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason=NO_CUDA_REASON)
no_cuda_only = pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")
SMALL_BUCKETS = (1, 8, 64)
# bucket edges, padding inside a bucket, and chunks above the largest bucket
BATCHES = (1, 2, 7, 8, 9, 63, 64, 65, 130, 200)


def _manifest(pkg: Path) -> dict[str, Any]:
    return dict(json.loads((pkg / "manifest.json").read_text()))


def _guard(pkg: Path) -> ParityGuard:
    return package_guard(pkg, _manifest(pkg))


def _rows(pkg: Path, n: int, seed: int = 3) -> np.ndarray:
    return random_rows([(f["min"], f["max"]) for f in _manifest(pkg)["features"]], n, seed)


def _backend(pkg: Path, **kwargs: Any) -> TorchCudaBackend:
    backend = TorchCudaBackend(pkg / "model.pt", _manifest(pkg)["network"], **kwargs)
    backend.load()
    return backend


def _reference(pkg: Path, x: np.ndarray) -> np.ndarray:
    ref = TorchBackend(pkg / "model.pt", _manifest(pkg)["network"])
    ref.load()
    return ref.predict(x)


@pytest.mark.parametrize("batch", BATCHES)
def test_cpu_path_pads_slices_and_chunks_to_fp32_pytorch_scores(
    small_package: Path, batch: int
) -> None:
    backend = _backend(small_package, device="cpu", buckets=SMALL_BUCKETS)
    x = _rows(small_package, batch, seed=batch)
    out = backend.predict(x)
    assert out.shape == (batch,) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(small_package, x), rtol=0, atol=1e-5)


def test_stale_padding_rows_never_reach_a_later_result(small_package: Path) -> None:
    backend = _backend(small_package, device="cpu", buckets=SMALL_BUCKETS)
    big, small = _rows(small_package, 60, seed=1), _rows(small_package, 3, seed=2)
    backend.predict(big)  # leaves 60 rows of the 64-bucket behind
    small_in_64 = np.concatenate([small, small, small, small])[:10]  # 10 rows: bucket 64
    np.testing.assert_allclose(
        backend.predict(small_in_64), _reference(small_package, small_in_64), atol=1e-5
    )


def test_results_are_fresh_arrays_not_views_of_the_buffers(small_package: Path) -> None:
    backend = _backend(small_package, device="cpu", buckets=SMALL_BUCKETS)
    x = _rows(small_package, 5)
    first = backend.predict(x)
    kept = first.copy()
    backend.predict(_rows(small_package, 5, seed=9))
    np.testing.assert_array_equal(first, kept)


def test_empty_batch_gives_empty_scores(small_package: Path) -> None:
    backend = _backend(small_package, device="cpu", buckets=SMALL_BUCKETS)
    assert backend.predict(np.zeros((0, 15), dtype=np.float32)).shape == (0,)


def test_fp16_runs_the_mlp_in_half_precision_within_the_guard(small_package: Path) -> None:
    backend = _backend(small_package, device="cpu", dtype="fp16", guard=_guard(small_package))
    report = backend.guard_report
    assert report["accepted"], report
    assert report["rows"] == 4_096 and report["decision_agreement"] >= 0.999
    x = _rows(small_package, 512)
    diff = np.abs(backend.predict(x) - _reference(small_package, x))
    assert 0 < diff.max() <= MAX_ABS_DIFF["fp16"]  # not zero: the layers did run in fp16


def test_guard_rejects_scores_that_move_decisions() -> None:
    thresholds = {"bands": {"decline": 0.5, "review": 0.1}}
    reference = np.linspace(0, 1, 1_000, dtype=np.float32)
    shifted = np.clip(reference + 0.03, 0, 1)
    report = compare(shifted, reference, thresholds, MAX_ABS_DIFF["fp16"])
    assert not report["accepted"]
    assert "max score difference" in str(report["reason"])
    assert "identical decisions" in str(report["reason"])
    assert compare(reference, reference, thresholds, 0.0)["accepted"]
    nan = reference.copy()
    nan[3] = np.nan
    assert "non-finite" in str(compare(nan, reference, thresholds, 1.0)["reason"])


def test_predict_rejects_a_wrong_shape_and_an_unloaded_backend(small_package: Path) -> None:
    network = _manifest(small_package)["network"]
    unloaded = TorchCudaBackend(small_package / "model.pt", network, device="cpu")
    with pytest.raises(RuntimeUnavailable, match="not loaded"):
        unloaded.predict(np.zeros((1, 15), dtype=np.float32))
    backend = _backend(small_package, device="cpu", buckets=SMALL_BUCKETS)
    with pytest.raises(ValueError, match=r"expected \(batch, 15\)"):
        backend.predict(np.zeros((4, 1), dtype=np.float32))


@pytest.mark.parametrize(
    ("device", "capability", "dtype", "compile", "fragment"),
    [
        ("cuda", (7, 0), "fp16", False, None),  # V100
        ("cuda", (7, 5), "fp16", False, None),  # T4
        (
            "cuda",
            (5, 2),
            "fp16",
            False,
            "fp16 needs compute capability >= 6.0; this device has 5.2",
        ),
        (
            "cuda",
            (7, 5),
            "bf16",
            False,
            "bf16 needs compute capability >= 8.0; this device has 7.5",
        ),
        ("cuda", (9, 0), "bf16", False, None),
        ("cuda", (6, 1), "fp32", True, "compute capability >= 7.0"),
        ("cuda", None, "fp32", False, NO_CUDA_REASON),
        ("cpu", None, "fp16", False, None),
        ("cpu", None, "fp32", True, "CUDA only"),
        ("cuda", (9, 0), "int4", False, "dtype 'int4'"),
    ],
)
def test_older_architectures_fall_back_with_a_reason(
    device: str,
    capability: tuple[int, int] | None,
    dtype: str,
    compile: bool,
    fragment: str | None,
) -> None:
    reason = unsupported_reason(device, capability, dtype, compile)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None and fragment in reason


def test_compile_on_cpu_is_refused_at_load(small_package: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match="CUDA only"):
        _backend(small_package, device="cpu", compile=True)


@no_cuda_only
def test_without_cuda_the_backend_is_unavailable_with_the_reason(small_package: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match=r"no CUDA device"):
        _backend(small_package, device="cuda")
    status = {s.name: s for s in discover()}["torch-cuda"]
    assert (status.available, status.reason) == (False, NO_CUDA_REASON)
    names = [b.name for b in candidates(small_package, ["fp32", "fp16"], [1])]
    assert not any(n.startswith("torch-cuda") for n in names)


def test_selection_times_and_picks_the_bucketed_backend(small_package: Path) -> None:
    backend = TorchCudaBackend(
        small_package / "model.pt",
        _manifest(small_package)["network"],
        device="cpu",
        buckets=SMALL_BUCKETS,
        name="torch-cuda-on-cpu",
    )
    chosen, timings, failures = select([backend], 15, (1, 8), budget_s=0.001)
    assert failures == {} and {b: c.name for b, c in chosen.items()} == {
        1: "torch-cuda-on-cpu",
        8: "torch-cuda-on-cpu",
    }
    assert timings["torch-cuda-on-cpu"][8]["p50_us"] > 0


# --- on a GPU (benchmarks/gpu_check.sh) ------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_graph_replay_matches_fp32_pytorch_on_every_bucket(small_package: Path, dtype: str) -> None:
    backend = _backend(small_package, dtype=dtype, guard=_guard(small_package))
    assert backend.guard_report["accepted"], backend.guard_report
    for batch in (1, 2, 8, 9, 1_000, 4_096, 70_000):  # 70,000: one chunk of 65,536 and one more
        x = _rows(small_package, batch, seed=batch)
        out = backend.predict(x)
        assert out.shape == (batch,) and out.dtype == np.float32
        diff = np.abs(out - _reference(small_package, x)).max()
        assert diff <= MAX_ABS_DIFF[dtype], (batch, diff)
        np.testing.assert_array_equal(out, backend.predict(x))  # replay is deterministic


@pytest.mark.gpu
@needs_cuda
def test_host_buffers_are_pinned_and_candidates_include_torch_cuda(small_package: Path) -> None:
    backend = _backend(small_package, buckets=(1, 64))
    for slot in backend._slots.values():
        assert torch.from_numpy(slot.host_in).is_pinned()
        assert torch.from_numpy(slot.host_out).is_pinned()
    names = [b.name for b in candidates(small_package, ["fp32", "fp16"], [1])]
    assert {"torch-cuda/fp32", "torch-cuda/fp16"} <= set(names)


@pytest.mark.gpu
@needs_cuda
def test_compiled_variant_loads_or_falls_back_with_a_reason(small_package: Path) -> None:
    network = _manifest(small_package)["network"]
    backend = TorchCudaBackend(small_package / "model.pt", network, buckets=(64,), compile=True)
    major, minor = torch.cuda.get_device_capability()
    reason = unsupported_reason("cuda", (major, minor), "fp32", True)
    if reason is not None:
        with pytest.raises(RuntimeUnavailable, match="needs"):
            backend.load()
        return
    backend.load()
    x = _rows(small_package, 50)
    assert np.abs(backend.predict(x) - _reference(small_package, x)).max() <= MAX_ABS_DIFF["fp32"]


def test_gpu_table_targets_compare_the_best_graph_with_the_floor_and_ort_cpu() -> None:
    from benchmarks.gpu_table import COPY_PINNED, ORT_CPU, targets

    def row(**p50_us: float) -> dict[int, dict[str, float]]:
        return {int(b[1:]): {"p50_us": us} for b, us in p50_us.items()}

    table = {
        COPY_PINNED: row(b1=14.0, b4096=25.0, b65536=97.0),
        ORT_CPU: row(b1=20.0, b4096=1_800.0, b65536=30_000.0),
        "torch-cuda/fp32": row(b1=45.0, b4096=80.0, b65536=400.0),
        "torch-cuda/fp16": row(b1=28.0, b4096=58.0, b65536=234.0),
        "torch-eager/fp32": row(b1=10.0, b4096=10.0, b65536=10.0),  # not a graph: ignored
    }
    result: dict[str, Any] = targets(table)
    assert result["batch_1_us"] == {
        "value": 28.0,
        "backend": "torch-cuda/fp16",
        "target": "<= 30",
        "met": True,
    }
    assert result["batch_65536_over_copy"]["value"] == pytest.approx(234 / 97)
    assert result["batch_65536_over_copy"]["met"] is False
    assert result["rows_per_s_vs_ort_cpu_at_4096"]["value"] == pytest.approx(1_800 / 58)
    assert "did not run" in str(targets({ORT_CPU: table[ORT_CPU]})["note"])
