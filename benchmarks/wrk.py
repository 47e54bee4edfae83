"""Closed-loop load with ``wrk`` (Debian package), pinned to the load core."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.errors import MeasurementFailed, ToolMissing
from benchmarks.servers import LOAD_CORE, pinned

INSTALL_HINT = "install it with `apt-get install wrk` (make bench and make bench-gate do)"


def require() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise ToolMissing(f"wrk is not installed: {INSTALL_HINT}")
    return path


def run(
    port: int,
    body: bytes,
    connections: int,
    seconds: float,
    content_type: str = "application/json",
) -> dict[str, float]:
    """POST ``body`` to /invocations for ``seconds``; req/s, p50/p90/p99 (us), non-2xx."""
    script = (
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    return run_script(port, script, connections, seconds)


def run_script(port: int, lua: str, connections: int, seconds: float) -> dict[str, float]:
    """wrk with a Lua script (``lua``) against /invocations; the figures ``run`` gives."""
    wrk = require()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(lua)
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        cmd += ["-s", str(script), f"http://127.0.0.1:{port}/invocations"]
        done = subprocess.run(pinned(cmd, LOAD_CORE), capture_output=True, text=True)
    if done.returncode != 0:
        raise MeasurementFailed(f"wrk exited with {done.returncode}: {done.stderr[-500:]}")
    return parse(done.stdout)


def interleaved(
    first: int, second: int, body: bytes, rounds: int, seconds: float
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Single-connection runs on two servers, alternating ``rounds`` times with both up: the
    host's noise moves both sides of a pair alike. One (first, second) pair of cells a round."""
    return [(run(first, body, 1, seconds), run(second, body, 1, seconds)) for _ in range(rounds)]


def parse(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise MeasurementFailed(f"wrk printed no Requests/sec line:\n{out[-1000:]}")
    result = {"rps": float(rps.group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            raise MeasurementFailed(f"wrk printed no {pct}% latency line:\n{out[-1000:]}")
        result[f"p{pct}_us"] = float(m.group(1)) * {"us": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    result["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0
    return result
