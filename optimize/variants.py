"""Optimised ONNX variants of the fp32 graph, built with onnxruntime's own tools.

Each builder writes one file and returns nothing; a builder that fails is recorded as a
rejected variant with the reason (the guard in ``optimize.guard`` judges the ones that build):

- ``ort_opt``: onnxruntime's extended graph optimisations (fusions), saved offline so the
  server skips them at load. Extended fusions emit CPU-provider ops: CPU only.
- ``fp16``: weights and activations in float16, float32 at the edges (keep_io_types).
- ``int8_dynamic``: int8 weights, activations quantised per batch at run time.
- ``int8_static``: int8 weights and activations (QDQ), ranges calibrated on training rows.

One more variant is not derived from the graph: ``fused`` (``optimize.export.FusedForm``, the
same function in fewer nodes, fastest at small batches) is exported from the network itself
by ``optimize.package``, which judges it with these.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from optimize.backend_protocol import INPUT_NAME


def build_ort_opt(src: Path, dst: Path, calibration_x: np.ndarray) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def build_fp16(src: Path, dst: Path, calibration_x: np.ndarray) -> None:
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def _preprocessed(src: Path, workdir: Path) -> Path:
    # quantisation wants shapes inferred and the graph cleaned first (onnxruntime's advice)
    out = workdir / "pre.onnx"
    quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    return out


def build_int8_dynamic(src: Path, dst: Path, calibration_x: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        quantize_dynamic(str(_preprocessed(src, Path(tmp))), str(dst), weight_type=QuantType.QInt8)


class _Rows(CalibrationDataReader):
    """Feeds calibration rows in batches of 256: (256, n_features) float32."""

    def __init__(self, x: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = iter(np.array_split(x, max(1, len(x) // 256)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch.astype(np.float32)}


def build_int8_static(src: Path, dst: Path, calibration_x: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        quantize_static(
            str(_preprocessed(src, Path(tmp))),
            str(dst),
            _Rows(calibration_x),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )


BUILDERS: dict[str, Callable[[Path, Path, np.ndarray], None]] = {
    "ort_opt": build_ort_opt,
    "fp16": build_fp16,
    "int8_dynamic": build_int8_dynamic,
    "int8_static": build_int8_static,
}
