"""The model package on disk: its file names, checksums, manifest digest and archive.

What the server needs to trust a package, and nothing more: no PyTorch, no ONNX tooling
(``optimize.package`` builds packages; this module reads and checks them). Invariants:

- ``manifest.json`` lists the SHA-256 of every other file, and carries its own digest
  (``manifest_sha256``, over its canonical rendering without that field): one flipped byte
  in any file makes :func:`verify` fail and name the file;
- a package declares one ``precision`` and serves only variants of that precision's family
  (``optimize.precision``); the scores each backend gives are checked against
  ``reference/`` when the server loads them (``optimize.reference``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from optimize.errors import ChecksumError, MissingFileError, PackageError
from optimize.precision import FAMILIES, PRECISIONS
from optimize.reference import ROWS, SCORES

FORMAT_VERSION = 2
MANIFEST, THRESHOLDS = "manifest.json", "thresholds.json"
WEIGHTS = "model.pt"
KERNEL_WEIGHTS = "model.fused_row.npz"  # the fused variant's weights in the C kernel's layout
BASELINE = ("baseline/statistics.json", "baseline/constraints.json")
REQUIRED = (MANIFEST, THRESHOLDS, "model.onnx", WEIGHTS, *BASELINE, ROWS, SCORES)


def variant_file(name: str) -> str:
    return "model.onnx" if name == "fp32" else f"model.{name}.onnx"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_manifest(manifest: dict[str, Any]) -> str:
    """Canonical text of a manifest, with its own digest as the last field."""
    # round-trip first so non-string keys (batch sizes) render as they will read back
    body = json.loads(json.dumps({k: v for k, v in manifest.items() if k != "manifest_sha256"}))
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, indent=2).encode()).hexdigest()
    return json.dumps({**body, "manifest_sha256": digest}, sort_keys=True, indent=2) + "\n"


def read_manifest(pkg: Path) -> dict[str, Any]:
    path = Path(pkg) / MANIFEST
    if not path.exists():
        raise MissingFileError(f"{path} is missing: not a model package")
    text = path.read_text(errors="replace")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChecksumError(f"{path} is not valid JSON ({exc}): damaged") from exc
    if not isinstance(manifest, dict) or render_manifest(manifest) != text:
        raise ChecksumError(f"{path} does not match its own digest: damaged or edited")
    return manifest


def verify(pkg: Path) -> dict[str, Any]:
    """Check the package; raise PackageError naming the first problem found."""
    pkg = Path(pkg)
    manifest = read_manifest(pkg)
    for name in REQUIRED:
        if not (pkg / name).is_file():
            raise MissingFileError(f"{pkg / name} is missing")
    files: dict[str, str] = manifest.get("files", {})
    for name in REQUIRED[1:]:
        if name not in files:
            raise ChecksumError(f"{MANIFEST} lists no checksum for {name}")
    for name, digest in files.items():
        path = pkg / name
        if not path.is_file():
            raise MissingFileError(f"{path} is listed in {MANIFEST} but missing")
        if sha256(path) != digest:
            raise ChecksumError(f"{path} does not match its SHA-256 in {MANIFEST}")
    for name, file in manifest["variants"].items():
        if file not in files:
            raise ChecksumError(f"variant {name} ({file}) has no checksum in {MANIFEST}")
    p = manifest["parity"]
    if max(p["real_max_abs_diff"], p["random_max_abs_diff"]) > p["limit"]:
        raise PackageError(f"recorded fp32 parity exceeds {p['limit']}")
    precision = manifest.get("precision")
    if precision not in FAMILIES:
        raise PackageError(f"precision {precision!r} in {MANIFEST}; expected one of {PRECISIONS}")
    stray = [v for v in manifest["variants"] if v not in FAMILIES[precision]]
    if stray:
        raise PackageError(f"variants {stray} are not of the package's precision {precision}")
    for name in manifest["variants"]:
        if name != "fp32" and not manifest["guard"]["variants"][name]["accepted"]:
            raise PackageError(f"variant {name} is served but failed the guard")
    return manifest


def archive(pkg: Path, tar_path: Path) -> None:
    """``model.tar.gz`` with the package files at its root, as SageMaker expects."""
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(Path(pkg).rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(pkg)))
    os.replace(tmp, tar_path)


def extract(tar_path: Path, dest: Path) -> None:
    with tarfile.open(tar_path, "r:gz") as tar:
        tar.extractall(dest, filter="data")
