"""The Neo artefact: the package's network traced to TorchScript with a float32 input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from deploy.errors import SettingsError
from deploy.neo_trace import build
from model.network import FraudNet

CONFIG = {"n_features": 15, "log_columns": [0, 1], "ratio_pairs": [[2, 3]], "hidden": [8, 4]}


@pytest.fixture()
def package(tmp_path: Path) -> tuple[Path, FraudNet]:
    torch.manual_seed(0)
    cfg = {**CONFIG, "ratio_pairs": [tuple(p) for p in CONFIG["ratio_pairs"]]}
    net = FraudNet(**cfg).eval()  # type: ignore[arg-type]
    torch.save(net.state_dict(), tmp_path / "model.pt")
    (tmp_path / "manifest.json").write_text(json.dumps({"network": CONFIG}))
    return tmp_path, net


# this torch deprecates TorchScript; Neo (torch <= 2.0) needs exactly that format
@pytest.mark.filterwarnings("ignore:.*torch.jit.* deprecated:DeprecationWarning")
def test_traced_model_scores_like_the_package(
    package: tuple[Path, FraudNet], tmp_path: Path
) -> None:
    pkg, net = package
    out = build(pkg, tmp_path / "neo.tar.gz", max_batch=4, allow_newer_torch=True)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["model.pth"]
        tar.extractall(tmp_path / "x", filter="data")
    traced = torch.jit.load(str(tmp_path / "x" / "model.pth"))
    x = torch.rand(4, 15, dtype=torch.float32) * 10
    with torch.no_grad():
        assert torch.allclose(traced(x), net(x), atol=1e-6)


def test_newer_torch_is_refused_without_the_override(
    package: tuple[Path, FraudNet], tmp_path: Path
) -> None:
    if torch.__version__.startswith(("1.", "2.0")):
        pytest.skip("this torch is one Neo accepts")
    with pytest.raises(SettingsError, match="newer than Neo's PyTorch 2.0"):
        build(package[0], tmp_path / "neo.tar.gz")
