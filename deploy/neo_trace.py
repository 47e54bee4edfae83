"""The artefact Neo compiles: our network traced to TorchScript, float32 input, in a tarball.

Neo's cloud compiler accepts PyTorch up to 2.0 and reads a ``model.tar.gz`` holding one
TorchScript file (``model.pth``). Run this module in a virtualenv with ``torch<=2.0``:
a TorchScript file saved by a newer torch may use operators or a format 2.0 cannot read::

    python -m venv .venv-neo && .venv-neo/bin/pip install 'torch==2.0.1' numpy
    PYTHONPATH=. .venv-neo/bin/python -m deploy.neo_trace --package artifacts/package \\
        --out artifacts/model-neo.tar.gz

The package's ``model.pt`` (state dict) and ``manifest.json`` (network config) are the input,
so the compiled model is the one the package serves. The example input is (max_batch, 15)
float32, which is also the ``DataInputConfig`` ``fraud deploy neo`` sends.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

from deploy.errors import SettingsError

MAX_TORCH = (2, 0)


def _torch_version(text: str) -> tuple[int, int]:
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def build(package: Path, out: Path, max_batch: int = 1, allow_newer_torch: bool = False) -> Path:
    import torch

    from model.network import from_description

    if _torch_version(torch.__version__) > MAX_TORCH and not allow_newer_torch:
        raise SettingsError(
            f"torch {torch.__version__} is newer than Neo's PyTorch 2.0: trace under torch<=2.0"
        )
    manifest = json.loads((package / "manifest.json").read_text())
    net = from_description(manifest["network"], package / "model.pt")
    example = torch.zeros(max_batch, manifest["network"]["n_features"], dtype=torch.float32)
    with torch.no_grad():
        traced = torch.jit.trace(net, example)
    with tempfile.TemporaryDirectory() as tmp:
        traced_path = Path(tmp) / "model.pth"
        traced.save(str(traced_path))
        with tarfile.open(out, "w:gz") as tar:
            tar.add(traced_path, arcname="model.pth")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--package", type=Path, required=True, help="model package directory")
    parser.add_argument("--out", type=Path, required=True, help="model.tar.gz for Neo")
    parser.add_argument("--max-batch", type=int, default=1)
    args = parser.parse_args(argv)
    print(build(args.package, args.out, args.max_batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
