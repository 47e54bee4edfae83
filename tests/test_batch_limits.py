"""GPU-aware serving defaults: batch limits from measured timings, one worker on a GPU."""

from __future__ import annotations

import pytest

from core.cpus import cpu_count
from optimize.torch_cuda import cuda_available
from serving.batch_limits import batcher_limit, max_batch_size, picked_p99_us
from serving.settings import Settings, workers_default

TIMINGS = {
    "torch-cuda/fp16": {1: {"p99_us": 40.0}, 512: {"p99_us": 60.0}, 4_096: {"p99_us": 90.0}},
    "ort-cpu/fp32/t1": {1: {"p99_us": 25.0}, 512: {"p99_us": 900.0}, 4_096: {"p99_us": 7_000.0}},
}


def test_picked_p99_follows_the_backend_picked_per_bucket() -> None:
    selection = {4_096: "torch-cuda/fp16", 1: "ort-cpu/fp32/t1", 512: "torch-cuda/fp16"}
    assert picked_p99_us(selection, TIMINGS) == {1: 25.0, 512: 60.0, 4_096: 90.0}


def test_picked_p99_names_a_bucket_without_timing() -> None:
    with pytest.raises(ValueError, match="64, 'torch-cuda/fp16'"):
        picked_p99_us({64: "torch-cuda/fp16"}, TIMINGS)


@pytest.mark.parametrize(
    ("budget_us", "expected"),
    [(1_000.0, 4_096), (90.0, 4_096), (89.9, 512), (50.0, 1), (10.0, 1)],
)
def test_max_batch_is_the_largest_bucket_within_the_budget(budget_us: float, expected: int) -> None:
    gpu = {1: 40.0, 512: 60.0, 4_096: 90.0}
    assert max_batch_size(gpu, budget_us) == expected


def test_max_batch_skips_a_slow_bucket_and_keeps_the_floor() -> None:
    assert max_batch_size({1: 30.0, 64: 5_000.0, 512: 80.0}, 100.0) == 512
    assert max_batch_size({8: 500.0}, 100.0, floor=16) == 16


def test_max_batch_rejects_a_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="budget of 0"):
        max_batch_size({1: 1.0}, 0)


def test_one_worker_owns_the_gpu_and_one_per_core_on_cpus() -> None:
    assert workers_default(16, gpu=True) == 1
    assert workers_default(16, gpu=False) == 16
    # this machine: the default follows torch's answer; an explicit count always wins
    expected = 1 if cuda_available() else cpu_count()
    assert Settings.from_env({}).workers == expected
    assert Settings.from_env({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}).workers == 3


def test_cpu_selection_keeps_the_configured_batcher_limit() -> None:
    selection = {1: "ort-cpu/fp32/t1", 4_096: "ort-cpu/int8_dynamic/t1"}
    timings = {
        "ort-cpu/fp32/t1": {1: {"p99_us": 30.0}},
        "ort-cpu/int8_dynamic/t1": {4_096: {"p99_us": 900.0}},
    }
    assert batcher_limit(selection, timings, configured=256, budget_us=5_000) == 256


def test_gpu_selection_grows_the_batcher_limit_to_the_budget() -> None:
    selection = {1: "torch-cuda/fp16", 4_096: "torch-cuda/fp16", 65_536: "torch-cuda/fp16"}
    timings = {
        "torch-cuda/fp16": {
            1: {"p99_us": 45.0},
            4_096: {"p99_us": 70.0},
            65_536: {"p99_us": 9_000.0},
        }
    }
    assert batcher_limit(selection, timings, configured=256, budget_us=5_000) == 4_096
    assert batcher_limit(selection, timings, configured=256, budget_us=10_000) == 65_536
