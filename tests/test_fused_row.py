"""The batch-1 C kernel (optimize/fused_row.py): same scores as PyTorch, refused when absent
or built for another ABI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.network import FraudNet
from optimize import fused_row
from optimize.backends import candidates, discover
from optimize.errors import RuntimeUnavailable
from optimize.export import FusedForm, random_rows, torch_scores
from optimize.fused_row import FusedRowBackend

needs_kernel = pytest.mark.skipif(
    not fused_row.library_status()[0], reason="C kernel not built (make install)"
)


def _network(hidden: list[int], members: int, activation: str) -> dict[str, Any]:
    return {
        "n_features": 15,
        "log_columns": [0, 3, 4],
        "ratio_pairs": [[0, 4], [0, 6]],
        "hidden": hidden,
        "n_members": members,
        "activation": activation,
    }


def _saved(tmp_path: Path, network: dict[str, Any]) -> tuple[FraudNet, Path]:
    """An untrained network with random standardisation and calibration, saved as the
    kernel's arrays (as a package's model.fused_row.npz)."""
    torch.manual_seed(1)
    cfg = {**network, "ratio_pairs": [tuple(p) for p in network["ratio_pairs"]]}
    net = FraudNet(**cfg)
    n_inputs = 15 + 3 + 2
    with torch.no_grad():
        net.center.copy_(torch.randn(n_inputs) * 3)
        net.scale.copy_(torch.rand(n_inputs) * 4 + 0.5)
        net.calib_slope.fill_(0.8)
        net.calib_intercept.fill_(-0.7)
    path = tmp_path / "model.fused_row.npz"
    np.savez(path, **FusedForm(net.eval()).kernel_arrays())  # type: ignore[arg-type]
    return net.eval(), path


def _loaded(tmp_path: Path, network: dict[str, Any]) -> tuple[FraudNet, FusedRowBackend]:
    """The saved network and the kernel backend loaded from it."""
    net, weights = _saved(tmp_path, network)
    backend = FusedRowBackend(weights)
    backend.load()
    return net, backend


@needs_kernel
@pytest.mark.parametrize(
    ("hidden", "members", "activation"),
    [([32, 16], 3, "silu"), ([32], 1, "relu"), ([16, 16, 8], 2, "relu"), ([128, 64], 3, "silu")],
)
def test_kernel_scores_as_pytorch_does(
    tmp_path: Path, hidden: list[int], members: int, activation: str
) -> None:
    net, backend = _loaded(tmp_path, _network(hidden, members, activation))
    x = random_rows([(0.0, 100.0)] * 15, 1_000, seed=5)
    x[:3, 4] = 0.0  # zero and negative inputs to the log columns
    x[3:6, 0] = -5.0
    reference = torch_scores(net, x)
    assert np.abs(backend.predict(x) - reference).max() <= 1e-5
    for i in range(5):  # the one-row path, which reuses its output buffer
        one = backend.predict(x[i : i + 1])
        assert one.shape == (1,) and abs(float(one[0]) - float(reference[i])) <= 1e-5
    first = backend.predict(x[:1])
    backend.predict(x[1:2])
    assert first[0] == backend.predict(x[:1])[0]  # an earlier answer is not overwritten


@needs_kernel
def test_kernel_takes_any_float_layout_and_refuses_a_wrong_width(tmp_path: Path) -> None:
    net, backend = _loaded(tmp_path, _network([16], 2, "silu"))
    x = random_rows([(0.0, 10.0)] * 15, 8, seed=2)
    expected = backend.predict(x)
    assert np.array_equal(backend.predict(np.asfortranarray(x.astype(np.float64))), expected)
    with pytest.raises(ValueError, match=r"expected \(rows, 15\)"):
        backend.predict(x[:, :14])


def test_kernel_is_refused_when_its_library_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fused_row, "LIBRARY", tmp_path / "libfusedrow.so")
    network = _network([16], 1, "relu")
    _, weights = _saved(tmp_path, network)
    with pytest.raises(RuntimeUnavailable, match="not built"):
        FusedRowBackend(weights).load()
    status = {s.name: s for s in discover()}["c-cpu"]
    assert not status.available and "not built" in status.reason


@needs_kernel
def test_kernel_is_a_candidate_for_packages_with_the_fused_variant(small_package: Path) -> None:
    assert "c-cpu/fused/t1" in [b.name for b in candidates(small_package, ["fp32", "fused"], [1])]
    assert "c-cpu/fused/t1" not in [b.name for b in candidates(small_package, ["fp32"], [1])]


@needs_kernel
def test_kernel_refuses_columns_outside_the_row(tmp_path: Path) -> None:
    network = {**_network([16], 1, "relu"), "log_columns": [0, 3, 15]}  # past the row
    _, weights = _saved(tmp_path, network)
    with pytest.raises(RuntimeUnavailable, match="not all in"):
        FusedRowBackend(weights).load()


@needs_kernel
def test_kernel_passes_nan_through_as_pytorch_does(tmp_path: Path) -> None:
    net, backend = _loaded(tmp_path, _network([16], 2, "relu"))
    x = random_rows([(0.0, 10.0)] * 15, 2, seed=4)
    x[0, 3] = np.nan  # a log column: clamp and ReLU must not turn it into a number
    x[1, 1] = np.nan  # a plain column
    assert np.isnan(torch_scores(net, x)).all()
    assert np.isnan(backend.predict(x)).all()
    assert np.isnan(backend.predict(x[:1])).all()


@needs_kernel
def test_kernel_built_for_another_abi_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiler = shutil.which("cc")
    assert compiler is not None  # needs_kernel: make install compiled the real one
    other = tmp_path / "libfusedrow.so"
    source = Path(fused_row.__file__).parent / "kernel" / "fused_row.c"
    cmd = [compiler, "-O1", "-fPIC", "-shared", "-DFUSED_ROW_ABI_VERSION=1", "-o", str(other)]
    subprocess.run([*cmd, str(source), "-lm"], check=True)
    monkeypatch.setattr(fused_row, "LIBRARY", other)
    _, weights = _saved(tmp_path, _network([16], 1, "relu"))
    with pytest.raises(RuntimeUnavailable, match=r"ABI 1 .* expects ABI 2"):
        FusedRowBackend(weights).load()
    assert not {s.name: s for s in discover()}["c-cpu"].available
