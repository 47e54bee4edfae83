"""``torch-cuda``: the packaged network on a GPU, one captured CUDA graph per batch bucket.

NOT RUN ON A GPU YET: the CUDA path is written to PyTorch's documented API
(``torch.cuda.CUDAGraph``, ``torch.cuda.graph``, pinned host tensors, ``non_blocking`` copies)
and is measured by ``benchmarks/gpu_check.sh``; the CPU path below runs in the tests.

At ``load()``: the network is rebuilt from ``model.pt`` and the network definition in the
manifest (so any PyTorch version can load it), moved to the device and cast; for each bucket
(``optimize.buckets``) a device input, a pinned host input and a pinned host output are
allocated, the model is warmed up on a side stream and one CUDA graph is captured. Then the
accuracy guard runs (``ParityGuard``): a variant that fails it never loads, so selection
never sees it. ``predict`` plans the chunks, and for each: rows into the pinned input, an
asynchronous host-to-device copy of the real rows, graph replay over the whole bucket, an
asynchronous copy of the real rows' scores back, one stream synchronisation, slice.

``dtype``: ``fp32``; ``fp16`` and ``bf16`` run the MLP layers (the matmuls) in that type and
keep the feature derivation, standardisation and calibration in float32. ``compile``: the
network goes through ``torch.compile(mode="max-autotune-no-cudagraphs")`` before capture;
off by default, kept only where ``gpu_check.sh`` shows it pays. Architecture: fp16 needs
compute capability >= 6.0 (V100 7.0 and T4 7.5 qualify), bf16 >= 8.0, torch.compile's Triton
kernels >= 7.0; a variant the device cannot run raises ``RuntimeUnavailable`` with the reason,
which selection records as a load failure.

``device="cpu"`` runs the same buckets, padding and slicing with an eager call in place of the
graph: the tests use it; it is never a serving candidate. One caller at a time (the batcher).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from optimize.buckets import GPU_BUCKETS, normalize, plan
from optimize.errors import OptimizeError, RuntimeUnavailable

NO_CUDA_REASON = "no CUDA device (no NVIDIA device, no torch, or torch.cuda.is_available() False)"
DTYPES = ("fp32", "fp16", "bf16")
# the oldest compute capability each technique is used on; below it the variant does not load
MIN_CAPABILITY = {"fp16": (6, 0), "bf16": (8, 0), "compile": (7, 0)}
# largest score difference to fp32 PyTorch on the CPU that the guard lets through
MAX_ABS_DIFF = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
COMPILE_MODE = "max-autotune-no-cudagraphs"  # the graph is ours: inductor must not add one
WARMUP_RUNS = 3


class GuardRejected(OptimizeError):
    """A torch-cuda variant whose scores differ from fp32 PyTorch beyond the accuracy guard."""


NVIDIA_DEVICE_FILES = (Path("/dev/nvidia0"), Path("/proc/driver/nvidia/version"))


def cuda_available() -> bool:
    """True when torch can use a CUDA device. Asks torch only where the NVIDIA driver shows a
    device and torch is installed: a CPU host never imports torch for this question."""
    if not any(p.exists() for p in NVIDIA_DEVICE_FILES):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def unsupported_reason(
    device_type: str, capability: tuple[int, int] | None, dtype: str, compile: bool
) -> str | None:
    """Why this device cannot run the variant, or None when it can."""
    if dtype not in DTYPES:
        return f"dtype {dtype!r}; expected one of {DTYPES}"
    if device_type != "cuda":
        return "torch.compile variant runs on CUDA only" if compile else None
    if capability is None:
        return NO_CUDA_REASON
    needs = [(dtype, MIN_CAPABILITY[dtype])] if dtype in MIN_CAPABILITY else []
    if compile:
        needs.append(("torch.compile (Triton)", MIN_CAPABILITY["compile"]))
    for what, minimum in needs:
        if capability < minimum:
            have, need = ".".join(map(str, capability)), ".".join(map(str, minimum))
            return f"{what} needs compute capability >= {need}; this device has {have}"
    if compile and importlib.util.find_spec("triton") is None:
        return "torch.compile variant needs triton, which is not installed"
    return None


@dataclasses.dataclass(frozen=True)
class ParityGuard:
    """The accuracy guard without labels: random rows across the features' ranges (and 2x
    beyond), scored by the variant and by fp32 PyTorch on the CPU; decisions at the package
    thresholds must agree as ``optimize.guard`` demands and scores within ``MAX_ABS_DIFF``."""

    ranges: list[tuple[float, float]]
    thresholds: dict[str, Any]
    rows: int = 4_096
    seed: int = 7


def package_guard(package_dir: Path, manifest: dict[str, Any]) -> ParityGuard:
    """The guard for a model package: its features' ranges and its thresholds."""
    return ParityGuard(
        ranges=[(float(f["min"]), float(f["max"])) for f in manifest["features"]],
        thresholds=json.loads((package_dir / "thresholds.json").read_text()),
    )


def compare(
    scores: np.ndarray, reference: np.ndarray, thresholds: dict[str, Any], max_abs_diff: float
) -> dict[str, object]:
    from optimize.guard import MIN_DECISION_AGREEMENT
    from optimize.thresholds import decide

    finite = bool(np.isfinite(scores).all())
    diff = float(np.max(np.abs(scores - reference))) if finite else float("inf")
    agreement = float(np.mean(decide(scores, thresholds) == decide(reference, thresholds)))
    problems = []
    if not finite:
        problems.append("non-finite scores")
    if diff > max_abs_diff:
        problems.append(f"max score difference {diff:.3g} above {max_abs_diff:g}")
    if agreement < MIN_DECISION_AGREEMENT:
        problems.append(f"{agreement:.4%} identical decisions, below {MIN_DECISION_AGREEMENT:.1%}")
    return {
        "max_abs_diff": diff,
        "decision_agreement": agreement,
        "rows": len(scores),
        "accepted": not problems,
        "reason": "; ".join(problems) if problems else "within the guard",
    }


@dataclasses.dataclass
class _Slot:
    """One bucket: host buffers the caller fills and reads, and ``run(rows)`` in between."""

    host_in: np.ndarray  # (bucket, n_features) float32; pinned on CUDA
    host_out: np.ndarray  # (bucket,) float32; pinned on CUDA
    run: Callable[[int], None]


class TorchCudaBackend:
    def __init__(
        self,
        weights: Path,
        network: dict[str, Any],
        dtype: str = "fp32",
        buckets: Iterable[int] = GPU_BUCKETS,
        device: str = "cuda",
        compile: bool = False,
        guard: ParityGuard | None = None,
        name: str | None = None,
    ) -> None:
        self.weights, self.network, self.dtype = Path(weights), network, dtype
        self.buckets = normalize(buckets)
        self.device, self.compile, self.guard = device, compile, guard
        self.name = name or f"torch-cuda/{dtype}" + ("/compiled" if compile else "")
        self.n_features = int(network["n_features"])
        self.guard_report: dict[str, object] = {}
        self._slots: dict[int, _Slot] = {}

    def load(self) -> None:
        import torch

        from model.network import load_network

        device = torch.device(self.device)
        capability = None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeUnavailable(NO_CUDA_REASON)
            if device.index is None:  # set_device and the streams want an index
                device = torch.device("cuda", torch.cuda.current_device())
            major, minor = torch.cuda.get_device_capability(device)
            capability = (major, minor)
        reason = unsupported_reason(device.type, capability, self.dtype, self.compile)
        if reason:
            raise RuntimeUnavailable(f"{self.name}: {reason}")
        try:
            net = load_network(self.weights, self.network, self.dtype).to(device)
            model = net
            if self.compile:
                model = torch.compile(net, mode=COMPILE_MODE, dynamic=False, fullgraph=True)
            if device.type == "cuda":
                torch.cuda.set_device(device)  # one process owns the device (serving.settings)
                self._slots = {b: self._graph_slot(model, b, device) for b in self.buckets}
            else:
                self._slots = {b: self._eager_slot(model, b) for b in self.buckets}
        except (RuntimeError, OSError) as exc:  # OOM, capture or compile failure, bad weights
            raise RuntimeUnavailable(f"{self.name} cannot load: {exc}") from exc
        if self.guard is not None:
            self._check(self.guard)

    def _eager_slot(self, model: Any, bucket: int) -> _Slot:
        import torch

        host_in = np.zeros((bucket, self.n_features), dtype=np.float32)
        host_out = np.zeros(bucket, dtype=np.float32)
        t_in, t_out = torch.from_numpy(host_in), torch.from_numpy(host_out)

        def run(rows: int) -> None:
            with torch.no_grad():  # the whole bucket, padding rows included, as the graph does
                t_out.copy_(model(t_in))

        return _Slot(host_in, host_out, run)

    def _graph_slot(self, model: Any, bucket: int, device: Any) -> _Slot:
        import torch

        pin_in = torch.zeros((bucket, self.n_features), dtype=torch.float32, pin_memory=True)
        pin_out = torch.zeros(bucket, dtype=torch.float32, pin_memory=True)
        dev_in = torch.zeros((bucket, self.n_features), dtype=torch.float32, device=device)
        # warm-up on a side stream (cuBLAS handles, compiled kernels) before capture, as the
        # CUDA graphs notes require
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(WARMUP_RUNS):
                model(dev_in)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            dev_out = model(dev_in)  # (bucket,) float32 in the graph's private memory pool

        def run(rows: int) -> None:
            # copies and replay go on the caller's current stream, in order; only the real
            # rows cross the bus, the graph computes the whole bucket
            dev_in[:rows].copy_(pin_in[:rows], non_blocking=True)
            graph.replay()
            pin_out[:rows].copy_(dev_out[:rows], non_blocking=True)
            torch.cuda.current_stream(device).synchronize()  # the host reads pin_out next

        return _Slot(pin_in.numpy(), pin_out.numpy(), run)

    def _check(self, guard: ParityGuard) -> None:
        import torch

        from model.network import load_network
        from optimize.export import random_rows

        x = random_rows(guard.ranges, guard.rows, guard.seed)
        reference_net = load_network(self.weights, self.network, "fp32")
        with torch.no_grad():
            reference = reference_net(torch.from_numpy(x)).numpy()
        self.guard_report = compare(
            self.predict(x), reference, guard.thresholds, MAX_ABS_DIFF[self.dtype]
        )
        if not self.guard_report["accepted"]:
            self._slots = {}
            raise GuardRejected(f"{self.name} fails the guard: {self.guard_report['reason']}")

    def predict(self, x: np.ndarray) -> np.ndarray:
        # (batch, n_features) float32 -> (batch,) float32, a fresh array
        if not self._slots:
            raise RuntimeUnavailable(f"{self.name} is not loaded: call load() first")
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"input of shape {x.shape}; expected (batch, {self.n_features})")
        out = np.empty(len(x), dtype=np.float32)
        for chunk in plan(len(x), self.buckets):
            slot = self._slots[chunk.bucket]
            slot.host_in[: chunk.rows] = x[chunk.start : chunk.stop]
            slot.run(chunk.rows)
            out[chunk.start : chunk.stop] = slot.host_out[: chunk.rows]
        return out
