"""``c-cpu/fused``: the fused form scored row by row in a small C kernel (optimize/kernel).

The kernel is for the lone single-record request. Scoring one row costs ONNX Runtime about
5 us of fixed work per run before any arithmetic, and around 20 us when the core went idle
between requests; one row through the kernel takes about 5 us warm and 6 us cold (2-core
build machine). Over HTTP, interleaved single-record runs against the same server on ONNX
Runtime's fused graph show the gain at the request level (benchmarks/RESULTS.md, "C kernel").
It has no batching of its own, so at larger batches the server's selection keeps ONNX Runtime.

The weights come from the package's ``model.fused_row.npz``, written at build from
``optimize.export.FusedForm`` (the same folding that built ``model.fused.onnx``), so loading
needs no PyTorch. At load the library's ABI version and struct size must match the ctypes
description below; the selection then holds its scores to the package's reference scores
(``optimize.reference``) like every other backend. The shared library is built by
``make install`` (``cc``); without a compiler it is absent and ``discover()`` says so.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import numpy as np

from optimize.errors import RuntimeUnavailable

LIBRARY = Path(__file__).parent / "kernel" / "libfusedrow.so"
ABI_VERSION = 2  # FUSED_ROW_ABI_VERSION in kernel/fused_row.c
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


def _library() -> ctypes.CDLL:
    """The kernel library, after its ABI check; RuntimeUnavailable with the reason otherwise."""
    if not LIBRARY.exists():
        raise RuntimeUnavailable(f"{LIBRARY.name} not built (make install builds it with cc)")
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        lib.fused_row_abi_version.restype = ctypes.c_int
        lib.fused_row_struct_size.restype = ctypes.c_int
        version, size = lib.fused_row_abi_version(), lib.fused_row_struct_size()
    except (OSError, AttributeError) as exc:
        raise RuntimeUnavailable(f"{LIBRARY.name} does not load: {exc}") from exc
    if (version, size) != (ABI_VERSION, ctypes.sizeof(_Net)):
        raise RuntimeUnavailable(
            f"{LIBRARY.name} has ABI {version} with a {size}-byte struct; this loader expects "
            f"ABI {ABI_VERSION} with {ctypes.sizeof(_Net)} bytes (rebuild it: make install)"
        )
    return lib


def library_status() -> tuple[bool, str]:
    """(available, reason) for ``discover()``."""
    try:
        _library()
    except RuntimeUnavailable as exc:
        return False, str(exc)
    return True, f"{LIBRARY.name} (C kernel ABI {ABI_VERSION}, one row at a time)"


class FusedRowBackend:
    """The fused network through the C kernel; ``predict`` as the other backends."""

    max_batch = 64  # row at a time: ONNX Runtime's batched GEMMs win above this

    def __init__(self, arrays: Path, name: str = "c-cpu/fused/t1") -> None:
        self.arrays, self.name = Path(arrays), name
        self._keep: list[Any] = []  # every buffer the C struct points into
        self._lock = threading.Lock()  # one scratch area: one caller at a time

    def load(self) -> None:
        lib = _library()
        with np.load(self.arrays, allow_pickle=False) as npz:
            self._bind(lib, {k: npz[k] for k in npz.files})

    def _floats(self, a: np.ndarray) -> Any:
        a = np.ascontiguousarray(a, dtype=np.float32)
        self._keep.append(a)
        return a.ctypes.data_as(_F)

    def _ints(self, a: np.ndarray) -> Any:
        a = np.ascontiguousarray(a, dtype=np.int32)
        self._keep.append(a)
        return a.ctypes.data_as(_I)

    def _bind(self, lib: ctypes.CDLL, w: dict[str, np.ndarray]) -> None:
        n_features, members, width, n_rest, silu = (int(v) for v in w["shape"])
        columns = w["columns"]
        if not ((columns >= 0) & (columns < n_features)).all():  # the kernel indexes rows
            raise RuntimeUnavailable(
                f"derived-input columns {columns.tolist()} are not all in [0, {n_features})"
            )
        n = _Net()
        n.n_features, n.n_derived, n.members = n_features, len(columns), members
        n.width, n.n_rest, n.silu = width, n_rest, silu
        n.columns = self._ints(columns)
        n.center, n.scale = self._floats(w["center"]), self._floats(w["scale"])
        n.w_first, n.b_first = self._floats(w["w_first"]), self._floats(w["b_first"])
        n.rest_width = self._ints(w["rest_width"])
        keys = [(j, k) for j in range(n_rest) for k in range(members)]  # [layer * members + m]
        w_rest = (_F * max(1, len(keys)))(*[self._floats(w[f"w_rest_{j}_{k}"]) for j, k in keys])
        b_rest = (_F * max(1, len(keys)))(*[self._floats(w[f"b_rest_{j}_{k}"]) for j, k in keys])
        self._keep += [w_rest, b_rest]
        n.w_rest = ctypes.cast(w_rest, ctypes.POINTER(_F))
        n.b_rest = ctypes.cast(b_rest, ctypes.POINTER(_F))
        n.w_head = self._floats(w["w_head"])
        n.b_head = float(w["b_head"][0])
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
        self.n_features = n_features
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
