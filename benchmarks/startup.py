"""``make bench-startup``: how fast a new serving instance comes up, and what it weighs.

Per run, on the demo package: seconds from process start to the first healthy ``/ping``,
the worker's RSS after 200 single-record requests, and the serving modules' import time in a
fresh interpreter; with ``--runtime-venv``, the size of a venv built from
requirements/runtime.lock (what the CPU image installs). Servers are pinned to the server
core as in every benchmark here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import servers

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = "import serving.entrypoint, serving.app, serving.server, serving.scorer"
ROW = b"[[42.5,0,1,2,40.0,9,51.2,40,48.7,3,0.0,20,0.05,90,0.01]]"


def import_s() -> float:
    code = f"import time; t = time.perf_counter(); {IMPORTS}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def one_start(package: Path) -> tuple[float, float]:
    """(seconds to healthy, worker RSS MB after 200 requests)."""
    port = servers.free_port()
    cmd, env = servers.command("ours", package, port)
    with tempfile.NamedTemporaryFile("w+", suffix="-startup.log") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            servers.pinned(cmd, servers.SERVER_CORE),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            servers.wait_healthy("ours", proc, port, Path(log.name), 120)
            healthy = time.monotonic() - started
            with httpx.Client() as c:
                for _ in range(200):
                    c.post(
                        f"http://127.0.0.1:{port}/invocations",
                        content=ROW,
                        headers={"content-type": "application/json"},
                    )
            status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return healthy, rss_kb / 1024


def runtime_venv_mb() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(ROOT / "requirements" / "runtime.lock")], check=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", str(ROOT)], check=True)
        done = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True)
        return float(done.stdout.split()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtime-venv", action="store_true", help="also build and size it")
    args = parser.parse_args(argv)
    starts = [one_start(args.package) for _ in range(args.runs)]
    imports = [import_s() for _ in range(args.runs)]
    result: dict[str, object] = {
        "healthy_s": [round(h, 2) for h, _ in starts],
        "healthy_s_median": round(statistics.median(h for h, _ in starts), 2),
        "rss_mb": [round(r) for _, r in starts],
        "import_s": [round(i, 2) for i in imports],
        "import_s_median": round(statistics.median(imports), 2),
    }
    if args.runtime_venv:
        result["runtime_venv_mb"] = runtime_venv_mb()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
