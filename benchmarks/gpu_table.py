"""GPU backend table: host array in to host scores out, batch 1 to 65,536, in one run.

Rows: the bare host-to-device copy of the input (the floor: pageable ``.to("cuda")``, and
pinned as torch-cuda does it), PyTorch eager fp32 on the GPU, torch-cuda graph replay in fp32
and fp16, the compiled variant with ``--compile``, ONNX Runtime CPU on all cores, and any
GPU ONNX Runtime / TensorRT backend present (absent ones are listed with the reason). The
issue-7 targets are computed from the same run. NOT YET RUN ON A GPU: ``gpu_check.sh`` runs it.

    python -m benchmarks.gpu_table [--package artifacts/package] [--out-dir DIR] [--compile]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import machine, save
from core.cpus import cpu_count
from core.feature_names import N_FEATURES
from optimize.backends import Backend, OrtBackend, TorchBackend, candidates, discover
from optimize.package_files import variant_file, verify
from optimize.selection import time_backend
from optimize.torch_cuda import (
    NO_CUDA_REASON,
    TorchCudaBackend,
    cuda_available,
    package_guard,
)

BATCH_SIZES = (1, 8, 64, 512, 4_096, 65_536)
COMPILED_BUCKETS = (1, 4_096, 65_536)  # max-autotune per shape is slow: the target sizes only
ORT_CPU = f"ort-cpu/fp32/t{cpu_count()}"
COPY_PINNED = "copy/pinned-h2d"


class CopyFloor:
    """The input copy alone: (batch, n_features) float32 host array onto the device."""

    def __init__(self, pinned: bool) -> None:
        self.pinned = pinned
        self.name = COPY_PINNED if pinned else "copy/pageable-h2d"
        self._buffers: dict[int, Any] = {}

    def load(self) -> None:
        pass

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        if not self.pinned:
            torch.from_numpy(x).to("cuda")
        else:
            if len(x) not in self._buffers:
                host = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
                self._buffers[len(x)] = (host, torch.empty(x.shape, device="cuda"))
            host, device = self._buffers[len(x)]
            host.numpy()[:] = x
            device.copy_(host, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return np.empty(0, dtype=np.float32)


def backends(package: Path, manifest: dict[str, Any], compile: bool) -> list[Backend]:
    weights, network = package / "model.pt", manifest["network"]
    guard = package_guard(package, manifest)
    out: list[Backend] = [
        CopyFloor(pinned=False),
        CopyFloor(pinned=True),
        TorchBackend(weights, network, threads=0, device="cuda", name="torch-eager/fp32"),
        TorchCudaBackend(weights, network, "fp32", guard=guard),
        TorchCudaBackend(weights, network, "fp16", guard=guard),
        OrtBackend(package / "model.onnx", threads=cpu_count(), name=ORT_CPU),
    ]
    if compile:
        out += [
            TorchCudaBackend(weights, network, d, COMPILED_BUCKETS, compile=True, guard=guard)
            for d in ("fp32", "fp16")
        ]
    # GPU ONNX Runtime providers and TensorRT (fp16) where installed; discover() says why
    # not. Report only: a package serves one precision, whatever this table shows.
    gpu_runtimes = {"ort-cuda", "ort-tensorrt", "tensorrt"}
    present = [v for v in ("fp32", "fp16") if (package / variant_file(v)).exists()]
    return out + [
        b
        for b in candidates(package, present or ["fp32"], [1])
        if b.name.split("/")[0] in gpu_runtimes
    ]


def targets(table: dict[str, dict[int, dict[str, float]]]) -> dict[str, object]:
    """The GPU targets from one run: the best torch-cuda row against the floor and ORT CPU."""
    graphs = {n: t for n, t in table.items() if n.startswith("torch-cuda/")}
    if not graphs or COPY_PINNED not in table or ORT_CPU not in table:
        return {"note": "a row the targets need did not run", "rows": sorted(table)}

    def best(batch: int) -> tuple[str, float]:
        us, name = min((t[batch]["p50_us"], n) for n, t in graphs.items() if batch in t)
        return name, us

    name1, us1 = best(1)
    name_big, us_big = best(65_536)
    name_mid, us_mid = best(4_096)
    copy_big = table[COPY_PINNED][65_536]["p50_us"]
    speedup = table[ORT_CPU][4_096]["p50_us"] / us_mid
    return {
        "batch_1_us": {"value": us1, "backend": name1, "target": "<= 30", "met": us1 <= 30},
        "batch_65536_over_copy": {
            "value": us_big / copy_big,
            "backend": name_big,
            "copy_us": copy_big,
            "target": "<= 2",
            "met": us_big / copy_big <= 2,
        },
        "rows_per_s_vs_ort_cpu_at_4096": {
            "value": speedup,
            "backend": name_mid,
            "target": ">= 20",
            "met": speedup >= 20,
        },
    }


def run(package: Path, budget_s: float, compile: bool) -> dict[str, object]:
    import torch

    manifest = verify(package)
    table: dict[str, dict[int, dict[str, float]]] = {}
    failures: dict[str, str] = {}
    guards: dict[str, object] = {}
    for backend in backends(package, manifest, compile):
        try:
            backend.load()
        except Exception as exc:  # a variant the device cannot run is a row of the report
            failures[backend.name] = f"{type(exc).__name__}: {exc}"
            continue
        guards[backend.name] = getattr(backend, "guard_report", None)
        compiled = getattr(backend, "compile", False)
        sizes = [b for b in BATCH_SIZES if not compiled or b in COMPILED_BUCKETS]
        table[backend.name] = time_backend(backend, N_FEATURES, sizes, budget_s)
        print(f"timed {backend.name}", file=sys.stderr, flush=True)
    major, minor = torch.cuda.get_device_capability()
    return {
        "machine": machine(),
        "gpu": f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})",
        "torch": torch.__version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "model_version": manifest["model_version"],
        "network": manifest["network"],
        "table": table,
        "targets": targets(table),
        "guard": {k: v for k, v in guards.items() if v},
        "load_failures": failures,
        "runtimes": [vars(s) for s in discover()],
    }


def markdown(result: dict[str, object]) -> str:
    table: dict[str, dict[int, dict[str, float]]] = result["table"]  # type: ignore[assignment]
    lines = [
        f"Machine: {result['machine']}; GPU: {result['gpu']}; torch {result['torch']}.",
        "",
        "| backend | batch | rows/s | p50 us | p99 us |",
        "|---|---:|---:|---:|---:|",
    ]
    for batch in BATCH_SIZES:
        rows = [(t[batch], n) for n, t in table.items() if batch in t]
        for r, name in sorted(rows, key=lambda rn: rn[0]["p50_us"]):
            lines.append(
                f"| {name} | {batch} | {r['rows_per_s']:,.0f} | {r['p50_us']:,.1f} | "
                f"{r['p99_us']:,.1f} |"
            )
    lines += ["", "Targets: " + json.dumps(result["targets"], indent=1)]
    lines += ["Load failures: " + json.dumps(result["load_failures"], indent=1)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--budget-s", type=float, default=0.3, help="timing per cell")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    args = parser.parse_args(argv)
    if not cuda_available():
        print(f"{NO_CUDA_REASON}: this benchmark runs on a CUDA machine", file=sys.stderr)
        return 2
    result = run(args.package, args.budget_s, args.compile)
    save(result, args.out_dir, "gpu-table")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
