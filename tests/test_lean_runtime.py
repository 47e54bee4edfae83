"""The serving process imports only what serving needs: no build or training stack."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.test_server import ROW, Server, _opt_ml

# what the server must never import when ONNX Runtime backends (and the C kernel) serve
BUILD_STACK = ("torch", "onnx", "onnxruntime.quantization", "pandas", "sklearn", "xgboost")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


def _imported(log_text: str) -> set[str]:
    return {m.group(1) for line in log_text.splitlines() if (m := IMPORT_LINE.match(line))}


def _selection(log_text: str) -> dict[str, str]:
    for line in log_text.splitlines():
        if '"model loaded"' in line:
            return dict(json.loads(line)["selection"])
    raise AssertionError("no 'model loaded' line in the server log")


def test_server_scores_without_importing_the_build_stack(
    small_package: Path, tmp_path: Path
) -> None:
    root = _opt_ml(tmp_path, small_package)
    # -X importtime through the environment: every module the process imports, on stderr
    srv = Server(root, {"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        srv.wait_healthy()
        r = httpx.post(
            srv.url + "/invocations",
            content=json.dumps([ROW]),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200
        assert r.json()["precision"] == "fp32"
    finally:
        srv.stop()
    log_text = srv.log.read_text()
    selection = _selection(log_text)
    assert all(name.startswith(("ort-cpu/", "c-cpu/")) for name in selection.values()), selection
    imported = _imported(log_text)
    assert "onnxruntime" in imported  # the parse works: the runtime itself shows up
    heavy = sorted(m for m in imported if any(m == h or m.startswith(h + ".") for h in BUILD_STACK))
    assert not heavy, heavy
