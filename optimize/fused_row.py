"""``c-cpu/fused``: the fused form scored row by row in a small C kernel (optimize/kernel).

The kernel is for the lone single-record request. Scoring one row costs ONNX Runtime about
5 us of fixed work per run before any arithmetic, and around 20 us when the core went idle
between requests. On this network one row through the kernel takes about 5 us warm and 6 us
cold, measured on the 2-core build machine (RESULTS.md, "HTTP"). It has no batching of its
own, so at larger batches the server's per-batch-size selection keeps ONNX Runtime.

The weights come from the package's ``model.pt`` through ``optimize.export.FusedForm``, the
same folding that built ``model.fused.onnx``. At load, the kernel's scores on random rows
must match PyTorch's within the fp32 parity limit, or the backend refuses to load and the
server never picks it. The shared library is built by ``make install`` (``cc``); without a
compiler it is absent and ``discover()`` says so.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from optimize.errors import RuntimeUnavailable

LIBRARY = Path(__file__).parent / "kernel" / "libfusedrow.so"
_F = ctypes.POINTER(ctypes.c_float)
_I = ctypes.POINTER(ctypes.c_int)


class _Net(ctypes.Structure):
    _fields_ = [
        ("n_features", ctypes.c_int),
        ("n_derived", ctypes.c_int),
        ("members", ctypes.c_int),
        ("width", ctypes.c_int),
        ("n_rest", ctypes.c_int),
        ("silu", ctypes.c_int),
        ("columns", _I),
        ("center", _F),
        ("scale", _F),
        ("w_first", _F),
        ("b_first", _F),
        ("rest_width", _I),
        ("w_rest", ctypes.POINTER(_F)),
        ("b_rest", ctypes.POINTER(_F)),
        ("w_head", _F),
        ("b_head", ctypes.c_float),
        ("scratch", _F),
    ]


def library_status() -> tuple[bool, str]:
    """(available, reason) for ``discover()``."""
    if not LIBRARY.exists():
        return False, f"{LIBRARY.name} not built (make install builds it with cc)"
    try:
        ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        return False, f"{LIBRARY.name} does not load: {exc}"
    return True, f"{LIBRARY.name} (C kernel, one row at a time)"


class FusedRowBackend:
    """The fused network through the C kernel; ``predict`` as the other backends."""

    def __init__(
        self, weights: Path, network: dict[str, Any], name: str = "c-cpu/fused/t1"
    ) -> None:
        self.weights, self.network, self.name = Path(weights), network, name
        self._keep: list[Any] = []  # every buffer the C struct points into
        self._lock = threading.Lock()  # one scratch area: one caller at a time

    def load(self) -> None:
        available, reason = library_status()
        if not available:
            raise RuntimeUnavailable(reason)
        import torch

        from model.network import from_description
        from optimize.export import FP32_PARITY_LIMIT, FusedForm, random_rows, torch_scores

        net = from_description(self.network, self.weights)
        with torch.no_grad():
            fused = FusedForm(net)
        self._bind(fused)
        # the kernel's own parity check, on rows across and beyond a generous range
        x = random_rows([(0.0, 1_000.0)] * net.n_features, 512, seed=11)
        diff = float(np.abs(self.predict(x) - torch_scores(net, x)).max())
        if not diff <= FP32_PARITY_LIMIT:
            raise RuntimeUnavailable(
                f"C kernel differs from PyTorch by {diff:.3g} (limit {FP32_PARITY_LIMIT})"
            )

    def _floats(self, t: Any) -> Any:
        a = np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)
        self._keep.append(a)
        return a.ctypes.data_as(_F)

    def _ints(self, values: Any) -> Any:
        a = np.ascontiguousarray(values, dtype=np.int32)
        self._keep.append(a)
        return a.ctypes.data_as(_I)

    def _bind(self, fused: Any) -> None:
        net = fused.net

        n = _Net()
        n.n_features = net.n_features
        n.n_derived = len(fused.columns)
        n.members = net.n_members
        n.width = fused.width
        n.n_rest = fused.n_rest
        n.silu = 1 if net.activation == "silu" else 0
        columns = fused.columns.numpy()
        if not ((columns >= 0) & (columns < net.n_features)).all():  # the kernel indexes rows
            raise RuntimeUnavailable(
                f"derived-input columns {columns.tolist()} are not all in [0, {net.n_features})"
            )
        n.columns = self._ints(columns)
        n.center = self._floats(fused.center)
        n.scale = self._floats(fused.scale)
        n.w_first = self._floats(fused.w_first.T)  # (in, members * width)
        n.b_first = self._floats(fused.b_first)
        later = fused.later_layers()  # per layer, per member: (weight (out, in), bias)
        n.rest_width = self._ints([layer[0][0].shape[0] for layer in later] or [0])
        pairs = [pair for layer in later for pair in layer]  # [layer * members + member]
        w_rest = (_F * max(1, len(pairs)))(*[self._floats(w.T) for w, _ in pairs])
        b_rest = (_F * max(1, len(pairs)))(*[self._floats(b) for _, b in pairs])
        self._keep += [w_rest, b_rest]
        n.w_rest = ctypes.cast(w_rest, ctypes.POINTER(_F))
        n.b_rest = ctypes.cast(b_rest, ctypes.POINTER(_F))
        n.w_head = self._floats(fused.w_head.reshape(-1))
        n.b_head = float(fused.b_head[0])
        lib = ctypes.CDLL(str(LIBRARY))
        lib.fused_row_scratch_floats.argtypes = [ctypes.c_void_p]
        lib.fused_row_scratch_floats.restype = ctypes.c_int
        lib.fused_row_score.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.fused_row_score.argtypes += [ctypes.c_void_p]
        lib.fused_row_score.restype = None
        self._net = n
        scratch = np.zeros(lib.fused_row_scratch_floats(ctypes.addressof(n)), dtype=np.float32)
        self._keep.append(scratch)
        n.scratch = scratch.ctypes.data_as(_F)
        self._score = lib.fused_row_score
        self._net_address = ctypes.addressof(n)
        self.n_features = net.n_features
        self._one_out = np.zeros(1, dtype=np.float32)  # (1,)
        self._one_address = self._one_out.ctypes.data

    def predict(self, x: np.ndarray) -> np.ndarray:
        # (rows, n_features) float32 -> (rows,) float32
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:  # the kernel reads rows * n_features
            raise ValueError(f"x has shape {x.shape}, expected (rows, {self.n_features})")
        rows = len(x)
        if rows == 1:
            with self._lock:
                self._score(self._net_address, x.ctypes.data, 1, self._one_address)
                return self._one_out.copy()
        out = np.empty(rows, dtype=np.float32)
        with self._lock:
            self._score(self._net_address, x.ctypes.data, rows, out.ctypes.data)
        return out
