"""HTTP on a GPU machine: the server with its GPU backend against the same server on CPUs.

Each server (``python -m serving.entrypoint`` on the package, its own defaults: one worker
on CUDA, one per core with CUDA hidden) runs on the first half of the cores; the open-loop
generator (``benchmarks.open_loop``, several processes so one interpreter's GIL does not cap
the rate) on the other half. Rates double until p99 exceeds the budget or the rate is not
reached; the figure is the highest rate served with p99 <= budget and no errors, and the
time from start to a healthy /ping. The p99 of a step is the worst of its generator
processes. NOT YET RUN ON A GPU: ``gpu_check.sh`` runs it.

    python -m benchmarks.gpu_http [--package artifacts/package] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks import open_loop, servers
from benchmarks.report import machine, save
from optimize.torch_cuda import NO_CUDA_REASON, cuda_available

BODY = b'{"instances": [[42.5,0,1,2,40.0,9,51.2,40,48.7,3,0.0,20,0.05,90,0.01]]}'
RATES = (1_000, 2_000, 4_000, 8_000, 16_000, 32_000)
P99_BUDGET_US = 10_000.0
READY_TIMEOUT_S = 90.0


def _start(
    package: Path, cores: list[int], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = servers.free_port()
    cmd = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, "-m", "serving.entrypoint"]
    server_env = {**os.environ, "FRAUD_MODEL_DIR": str(package), **env}
    server_env["SAGEMAKER_BIND_TO_PORT"] = str(port)
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=server_env, stdout=out, stderr=subprocess.STDOUT)
    return proc, port


def _step(port: int, rate: float, seconds: float, generators: int) -> dict[str, float]:
    with ProcessPoolExecutor(generators) as pool:
        parts = list(
            pool.map(
                open_loop.run,
                ["127.0.0.1"] * generators,
                [port] * generators,
                [rate / generators] * generators,
                [seconds] * generators,
                [BODY] * generators,
            )
        )
    return {
        "rate": rate,
        "achieved_rps": sum(p["achieved_rps"] for p in parts),
        "p50_us": max(p["p50_us"] for p in parts),
        "p99_us": max(p["p99_us"] for p in parts),
        "errors": sum(p["errors"] + p["non_200"] for p in parts),
        "generator_late_p50_us": max(p["generator_late_p50_us"] for p in parts),
    }


def measure(
    package: Path, env: dict[str, str], cores: list[int], seconds: float, log: Path
) -> dict[str, object]:
    """Start one server, sweep the rates, stop it."""
    proc, port = _start(package, cores, env, log)
    try:
        ready_s = servers.wait_healthy("ours", proc, port, log, READY_TIMEOUT_S)
        _step(port, RATES[0], 1.0, 2)  # warm-up: connections, first batches
        steps = []
        for rate in RATES:
            step = _step(port, rate, seconds, generators=4)
            steps.append(step)
            ok = step["p99_us"] <= P99_BUDGET_US and step["errors"] == 0
            if not ok or step["achieved_rps"] < 0.9 * rate:
                break
        served = [
            s["achieved_rps"] for s in steps if s["p99_us"] <= P99_BUDGET_US and s["errors"] == 0
        ]
        return {"ready_s": ready_s, "steps": steps, "rps_at_p99_budget": max(served, default=0.0)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate step")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if not cuda_available():
        print(f"{NO_CUDA_REASON}: this benchmark runs on a CUDA machine", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    server_cores, generator_cores = cores[:half], cores[half:] or cores
    os.sched_setaffinity(0, generator_cores)  # the generator processes inherit it
    args.out_dir.mkdir(parents=True, exist_ok=True)
    servers: dict[str, dict[str, str]] = {"gpu": {}, "cpu": {"CUDA_VISIBLE_DEVICES": ""}}
    result: dict[str, object] = {
        "machine": machine(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "p99_budget_us": P99_BUDGET_US,
        "server_cores": server_cores,
        "generator_cores": generator_cores,
    }
    for name, env in servers.items():
        log = args.out_dir / f"server-{name}.log"
        result[name] = measure(args.package.resolve(), env, server_cores, args.seconds, log)
        print(name, result[name], flush=True)
    gpu_rps = result["gpu"]["rps_at_p99_budget"]  # type: ignore[index]
    cpu_rps = result["cpu"]["rps_at_p99_budget"]  # type: ignore[index]
    result["target"] = {"gpu_rps": gpu_rps, "cpu_rps": cpu_rps, "met": gpu_rps >= cpu_rps}
    save(result, args.out_dir, "gpu-http")
    print(result["target"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
