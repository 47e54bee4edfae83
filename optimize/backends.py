"""Scoring backends: one interface, ``load`` then ``predict((batch, 15) float32) -> (batch,)``.

Where each one has run (say it plainly; update when that changes):

| backend       | runtime                          | run on real hardware?                  |
|---------------|----------------------------------|----------------------------------------|
| ort-cpu       | onnxruntime, CPUExecutionProvider | yes: x86-64 CPU, tested in CI          |
| torch-cpu     | PyTorch eager, model.pt           | yes: x86-64 CPU, tested in CI          |
| ort-cuda      | onnxruntime-gpu, CUDA provider    | NO: written to the documented API only |
| ort-tensorrt  | onnxruntime-gpu, TensorRT provider| NO: written to the documented API only |
| tensorrt      | tensorrt engine, fp16 profiles    | NO: written to the documented API only |
| torch-cuda    | PyTorch, CUDA graph per bucket    | NO: not yet run on a GPU; CPU path tested |

The GPU backends are discovered, never imported blindly: ``discover()`` says which runtimes
are present and, for each absent one, why; nothing here fails at import.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from core.cpus import cpu_count
from optimize.backend_protocol import BATCH_RANGE, INPUT_NAME, Backend, RuntimeStatus
from optimize.errors import RuntimeUnavailable


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def discover() -> list[RuntimeStatus]:
    from optimize.fused_row import library_status
    from optimize.torch_cuda import NO_CUDA_REASON, cuda_available

    providers = _ort_providers()
    kernel, kernel_reason = library_status()
    trt_found = importlib.util.find_spec("tensorrt") is not None
    cuda = cuda_available()
    return [
        RuntimeStatus("ort-cpu", True, "onnxruntime CPUExecutionProvider", True),
        RuntimeStatus(
            "torch-cpu",
            importlib.util.find_spec("torch") is not None,
            "torch eager (development reference)",
            True,
        ),
        RuntimeStatus("c-cpu", kernel, kernel_reason, kernel),
        RuntimeStatus(
            "ort-cuda",
            "CUDAExecutionProvider" in providers,
            "CUDAExecutionProvider present"
            if "CUDAExecutionProvider" in providers
            else f"onnxruntime-gpu not installed (providers: {providers})",
            False,
        ),
        RuntimeStatus(
            "ort-tensorrt",
            "TensorrtExecutionProvider" in providers,
            "TensorrtExecutionProvider present"
            if "TensorrtExecutionProvider" in providers
            else "onnxruntime TensorRT provider not installed",
            False,
        ),
        RuntimeStatus(
            "tensorrt",
            trt_found,
            "tensorrt importable" if trt_found else "python package tensorrt not installed",
            False,
        ),
        RuntimeStatus(
            "torch-cuda",
            cuda,
            "torch.cuda.is_available() is True" if cuda else NO_CUDA_REASON,
            False,
        ),
    ]


class OrtBackend:
    """ONNX Runtime on one execution provider; ``threads`` = intra-op threads (0: default)."""

    def __init__(
        self,
        path: Path,
        provider: str = "CPUExecutionProvider",
        threads: int = 1,
        name: str | None = None,
    ) -> None:
        self.path, self.provider, self.threads = Path(path), provider, threads
        self.name = name or f"ort-{provider.removesuffix('ExecutionProvider').lower()}"
        self._session: Any = None
        self._binding: Any = None  # batch-1 IOBinding (CPU only), see _bind_one_row

    def load(self) -> None:
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            raise RuntimeUnavailable(f"{self.provider} is not available in this onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # the graph was optimised offline where it pays; this level is cheap and safe
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.path), options, providers=[self.provider])
        if self.provider == "CPUExecutionProvider":
            self._bind_one_row()

    def _bind_one_row(self) -> None:
        """Bind fixed host buffers for batch 1, the common single-record request: binding
        skips run()'s per-call argument handling and output allocation (measured on the 2-core
        build machine: 20.2 -> 17.4 us a call in a tight loop, 28.2 -> 24.0 us with other
        memory traffic between calls, as in the server)."""
        n_features = self._session.get_inputs()[0].shape[1]
        output = self._session.get_outputs()[0].name
        self._one_in = np.zeros((1, n_features), dtype=np.float32)  # (1, n_features)
        self._one_out = np.zeros((1,), dtype=np.float32)  # (1,)
        binding = self._session.io_binding()
        binding.bind_input(
            INPUT_NAME, "cpu", 0, np.float32, [1, n_features], self._one_in.ctypes.data
        )
        binding.bind_output(output, "cpu", 0, np.float32, [1], self._one_out.ctypes.data)
        self._binding = binding

    def predict(self, x: np.ndarray) -> np.ndarray:
        # (batch, n_features) float32 -> (batch,) float32
        if len(x) == 1 and self._binding is not None:
            self._one_in[...] = x
            self._session.run_with_iobinding(self._binding)
            return self._one_out.copy()
        return self._session.run(None, {INPUT_NAME: x})[0]


class TorchBackend:
    """PyTorch eager on the packaged weights, loaded into the network definition."""

    def __init__(
        self,
        weights: Path,
        network: dict[str, Any],
        threads: int = 1,
        device: str = "cpu",
        name: str = "torch-cpu",
    ) -> None:
        self.weights, self.network, self.threads = Path(weights), network, threads
        self.device, self.name = device, name
        self._model: Any = None

    def load(self) -> None:
        import torch

        from model.network import load_network

        if self.threads:
            torch.set_num_threads(self.threads)
        self._model = load_network(self.weights, self.network).to(self.device)

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-wide: restore ours before each call
        with torch.inference_mode():
            out = self._model(torch.from_numpy(x).to(self.device))
        return out.cpu().numpy()


class TensorRTBackend:
    """A TensorRT engine built from the ONNX graph, fp16, one optimisation profile over the
    batch range. NOT run on real hardware yet (no TensorRT where we build); it follows the
    TensorRT 10 Python API and is skipped with a reason where tensorrt is absent."""

    name = "tensorrt"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._context: Any = None
        self._torch: Any = None  # CUDA buffers come from torch, loaded with the engine

    def load(self) -> None:
        if importlib.util.find_spec("tensorrt") is None:
            raise RuntimeUnavailable("python package tensorrt is not installed")
        import tensorrt as trt
        import torch

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(self.path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeUnavailable(f"TensorRT cannot parse {self.path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        n = network.get_input(0).shape[1]
        lo, hi = BATCH_RANGE
        profile.set_shape(INPUT_NAME, (lo, n), (512, n), (hi, n))
        config.add_optimization_profile(profile)
        engine_bytes = builder.build_serialized_network(network, config)
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
        self._context = engine.create_execution_context()
        self._torch = torch

    def predict(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        inp = torch.from_numpy(x).cuda()
        out = torch.empty(len(x), device="cuda", dtype=torch.float32)
        self._context.set_input_shape(INPUT_NAME, tuple(inp.shape))
        self._context.set_tensor_address(INPUT_NAME, inp.data_ptr())
        self._context.set_tensor_address("score", out.data_ptr())
        self._context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return out.cpu().numpy()


def candidates(
    package_dir: Path,
    variants: list[str],
    thread_options: list[int] | None = None,
    torch_compile: bool = False,
    include_torch_cpu: bool = False,
) -> list[Backend]:
    """Every backend x variant x thread count this machine can run for ``variants`` of a
    package (one thread wins at small batches, all cores at large ones). ``torch-cpu`` is a
    development reference, offered only when asked for: the CPU image has no PyTorch."""
    from optimize.package_files import KERNEL_WEIGHTS, variant_file

    manifest = json.loads((package_dir / "manifest.json").read_text())
    status = {s.name: s for s in discover()}
    threads = sorted(set(thread_options or [1, cpu_count()]))
    out: list[Backend] = []
    for variant in variants:
        path = package_dir / variant_file(variant)
        for t in threads:
            out.append(OrtBackend(path, threads=t, name=f"ort-cpu/{variant}/t{t}"))
        if status["ort-cuda"].available and variant != "ort_opt":
            out.append(OrtBackend(path, "CUDAExecutionProvider", name=f"ort-cuda/{variant}"))
        if status["ort-tensorrt"].available and variant == "fp32":
            out.append(OrtBackend(path, "TensorrtExecutionProvider", name="ort-tensorrt/fp32"))
    if status["tensorrt"].available and "fp16" in variants:
        out.append(TensorRTBackend(package_dir / "model.onnx"))
    if status["torch-cuda"].available:
        out.extend(_torch_cuda(package_dir, manifest, variants, torch_compile))
    if status["c-cpu"].available and "fused" in variants:
        from optimize.fused_row import FusedRowBackend

        out.append(FusedRowBackend(package_dir / KERNEL_WEIGHTS))
    if include_torch_cpu and status["torch-cpu"].available:
        out += [
            TorchBackend(
                package_dir / "model.pt", manifest["network"], t, name=f"torch-cpu/fp32/t{t}"
            )
            for t in threads
        ]
    return out


def _torch_cuda(
    package_dir: Path, manifest: dict[str, Any], variants: list[str], torch_compile: bool
) -> list[Backend]:
    """torch-cuda fp32, and fp16 where the package's fp16 variant passed the guard on the
    validation week; each variant must also pass the label-free guard at load."""
    from optimize.torch_cuda import TorchCudaBackend, package_guard

    guard = package_guard(package_dir, manifest)
    dtypes = [d for d in ("fp32", "fp16") if d in variants]
    weights, network = package_dir / "model.pt", manifest["network"]
    out: list[Backend] = [TorchCudaBackend(weights, network, d, guard=guard) for d in dtypes]
    if torch_compile:
        out += [TorchCudaBackend(weights, network, d, compile=True, guard=guard) for d in dtypes]
    return out
