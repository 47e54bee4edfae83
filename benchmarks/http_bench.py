"""HTTP benchmark: our server beside its references, same machine, same run.

Servers (each one worker, pinned to core 0 with taskset): ours (``serve`` on the package),
the HTTP floor (``benchmarks.floor_app``: raw ASGI constant, same uvicorn stack) and the
naive baseline (``benchmarks.naive_server``: FastAPI + PyTorch eager, one request at a
time). Load: ``wrk`` pinned to core 1, closed loop, single-record JSON (and a 100-record body
for ours), after a warm-up run; then ``benchmarks.open_loop`` at fixed rates (latency from
the scheduled send time, so queueing cannot hide; this process runs on core 1 too). The
model floor is in-process ONNX Runtime ``run`` on one row.
Prints a markdown table with the ratios; writes ``benchmarks/results/http-<stamp>.json``.

    python -m benchmarks.http_bench [--package artifacts/package] [--seconds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks import open_loop
from benchmarks.report import machine, save

ROW = [42.5, 0, 1, 2, 40.0, 9, 51.2, 40, 48.7, 3, 0.0, 20, 0.05, 90, 0.01]
CONCURRENCY = (1, 16, 64)
OPEN_LOOP_RATES = (500, 1_000, 2_000)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*taskset, *cmd], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {cmd} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server {cmd} not healthy in 120 s: {log.read_text()[-2000:]}")


def _wrk(port: int, body: str, connections: int, seconds: float, tmp: Path) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    taskset = ["taskset", "-c", "1"] if shutil.which("taskset") else []
    cmd = [
        *taskset,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/invocations",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            scale = {"us": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
            result[f"p{pct}_us"] = float(m.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def model_floor_us(package: Path) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(package / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    x = np.array([ROW], dtype=np.float32)
    for _ in range(200):
        session.run(None, {"features": x})
    samples = []
    for _ in range(5_000):
        t = time.perf_counter_ns()
        session.run(None, {"features": x})
        samples.append((time.perf_counter_ns() - t) / 1e3)
    return float(np.median(samples))


def _best_rps(cells: dict[str, dict[str, float]]) -> float:
    """Highest closed-loop single-record throughput whose p99 stays within 10 ms."""
    ok = [
        r["rps"]
        for k, r in cells.items()
        if k.startswith("c") and "rows" not in k and r.get("p99_us", 1e12) <= 10_000
    ]
    return max(ok, default=0.0)


def run(package: Path, seconds: float) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise SystemExit("http_bench: wrk is not installed (make bench installs it with apt)")
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the open-loop generator shares wrk's core, not ours
    single = json.dumps({"instances": [ROW]})
    batch = json.dumps({"instances": [ROW] * 100})
    py = sys.executable
    uv = [
        py,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--no-access-log",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
    ]
    servers = {
        "ours": (
            [py, "-m", "serving.entrypoint"],
            {
                "FRAUD_MODEL_DIR": str(package),
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
                "FRAUD_BIND_HOST": "127.0.0.1",
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING",
            },
        ),
        "http_floor": ([*uv, "benchmarks.floor_app:app"], {}),
        "naive_fastapi_torch": (
            [*uv, "--factory", "benchmarks.naive_server:create_app"],
            {"FRAUD_MODEL_DIR": str(package)},
        ),
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name, (cmd, env) in servers.items():
            port = _port()
            if name == "ours":
                env = {**env, "SAGEMAKER_BIND_TO_PORT": str(port)}
            else:
                cmd = [*cmd, "--port", str(port)]
            proc = _start(cmd, env, port, tmp / f"{name}.log")
            try:
                _wrk(port, single, 16, 2, tmp)  # warm-up
                results[name] = {f"c{c}": _wrk(port, single, c, seconds, tmp) for c in CONCURRENCY}
                if name == "ours":
                    results[name]["c16_100rows"] = _wrk(port, batch, 16, seconds, tmp)
                for rate in OPEN_LOOP_RATES:  # fixed-rate load: no coordinated omission
                    cell = open_loop.run("127.0.0.1", port, rate, seconds, single.encode())
                    results[name][f"open_{rate}"] = {
                        "rps": cell["achieved_rps"],
                        "p50_us": cell["p50_us"],
                        "p90_us": 0.0,
                        "p99_us": cell["p99_us"],
                        "p999_us": cell["p999_us"],
                        "non_2xx": cell["non_200"] + cell["errors"],
                    }
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    floor = model_floor_us(package)
    ours, http, naive = results["ours"], results["http_floor"], results["naive_fastapi_torch"]
    ratios = {
        "ours_p50_c1_minus_floors_us": ours["c1"]["p50_us"] - http["c1"]["p50_us"] - floor,
        "ours_p50_c1_over_http_floor": ours["c1"]["p50_us"] / http["c1"]["p50_us"],
        "ours_rps_over_naive_c64": ours["c64"]["rps"] / naive["c64"]["rps"],
        "ours_rps_over_naive_at_p99_10ms": _best_rps(ours) / max(_best_rps(naive), 1.0),
    }
    return {
        "machine": machine(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "seconds": seconds,
        "model_floor_us": floor,
        "servers": results,
        "ratios": ratios,
    }


def markdown(result: dict[str, object]) -> str:
    servers: dict[str, dict[str, dict[str, float]]] = result["servers"]  # type: ignore[assignment]
    lines = [
        f"Machine: {result['machine']}; server on core 0, wrk on core 1, "
        f"{result['seconds']} s per cell. Model floor (ORT run, 1 row): "
        f"{result['model_floor_us']:.1f} us.",
        "",
        "| server | load | req/s | p50 us | p90 us | p99 us | p99.9 us | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cells in servers.items():
        for cell, r in cells.items():
            lines.append(
                f"| {name} | {cell} | {r['rps']:,.0f} | {r.get('p50_us', 0):,.0f} | "
                f"{r.get('p90_us', 0):,.0f} | {r.get('p99_us', 0):,.0f} | "
                f"{r.get('p999_us', 0):,.0f} | {r['non_2xx']:.0f} |"
            )
    lines.append("")
    for k, v in result["ratios"].items():  # type: ignore[attr-defined]
        lines.append(f"- {k}: {v:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    result = run(args.package.resolve(), args.seconds)
    save(result, args.out_dir, "http")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
