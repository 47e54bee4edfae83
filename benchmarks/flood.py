"""Open-loop load over thousands of keep-alive connections, sent by ``flood.c`` (C, one thread,
epoll): the crowd ``benchmarks.faults overload`` sends at the server.

Why C: the uvloop generator it replaces fell behind on one core at ~10k req/s (its own latency
against a server that only refuses: 0.6 ms p50 at 8k req/s, 38 ms at 11k, 0.7 s at 15k),
below 3x a 5k req/s capacity, so a spike measured its backlog, not the server's.

flood.c's header holds the invariants: request i is due at start + its slot; an idle
connection takes it, or it waits in a FIFO for one (the wait counts in its latency); one
request per connection at a time; every scheduled request gets a record (its status, 0 when
its connection was lost, -1 when unanswered). The binary is built on first use with
``cc -O2`` into ``build/`` (git-ignored), again whenever flood.c is newer, and runs under
taskset on the load core.

Its own ceiling, against ``benchmarks.shedding_server`` (every request refused fast, one
worker on the server core):

    python -m benchmarks.flood [--rates 8000,11000,15000,20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import servers, wrk
from benchmarks.errors import BenchError, MeasurementFailed, ToolMissing
from benchmarks.open_loop import post_request

SOURCE = Path(__file__).with_name("flood.c")
BINARY = Path(__file__).resolve().parents[1] / "build" / "flood"
WARM_CHUNK = 200  # connections opened and given their first round trip at a time
RECORD = np.dtype(
    [
        ("scheduled_ns", "<i8"),  # due time, from the start of the first phase
        ("latency_ns", "<i8"),  # due time -> the response's last byte; -1 unanswered
        ("sent_ns", "<i8"),  # due time -> first byte written; -1 never sent
        ("status", "<i4"),  # HTTP status; 0 connection lost; -1 unanswered
        ("connection", "<i4"),  # the connection that carried it; -1 never sent
    ]
)


@dataclass(frozen=True)
class Flooded:
    records: np.ndarray  # RECORD, one per scheduled request, in schedule order
    summary: dict[str, Any]  # flood.c's summary line (counts, dispatch_lag_max_us)


def binary() -> Path:
    """The built generator; compiled first when missing or older than its source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    compiler = shutil.which("cc")
    if compiler is None:
        raise ToolMissing(f"no C compiler (cc) to build {SOURCE.name}: `apt-get install gcc`")
    BINARY.parent.mkdir(exist_ok=True)
    partial = BINARY.with_name(f"{BINARY.name}.{os.getpid()}.partial")
    cmd = [compiler, "-O2", "-o", str(partial), str(SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ToolMissing(f"cc could not build {SOURCE}:\n{done.stderr[-2_000:]}")
    os.replace(partial, BINARY)  # a concurrent run sees the old binary or the new, never half
    return BINARY


def open_files() -> int:
    """Raise this process's open-file limit to its hard limit (thousands of sockets, and the
    servers it starts inherit it); the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run(
    port: int,
    request: bytes,
    phases: list[tuple[float, float]],
    connections: int,
    wait_s: float = 60.0,
    warm_chunk: int = WARM_CHUNK,
) -> Flooded:
    """Send ``request`` to 127.0.0.1:``port`` on the schedule ``phases`` ((seconds, req/s) one
    after the other) over ``connections`` pre-opened connections; wait up to ``wait_s`` after
    the last due time for the last answers."""
    with tempfile.TemporaryDirectory() as tmp:
        request_file, out = Path(tmp) / "request", Path(tmp) / "samples"
        request_file.write_bytes(request)
        cmd = [str(binary()), "-p", str(port), "-c", str(connections), "-w", str(warm_chunk)]
        cmd += ["-t", str(wait_s), "-r", str(request_file), "-o", str(out)]
        cmd += [f"{float(seconds)!r}:{float(rate)!r}" for seconds, rate in phases]
        done = subprocess.run(servers.pinned(cmd, servers.LOAD_CORE), capture_output=True)
        stderr = done.stderr.decode(errors="replace")
        if done.returncode != 0:
            raise MeasurementFailed(f"flood exited with {done.returncode}: {stderr[-2_000:]}")
        if stderr:
            print(stderr, end="", file=sys.stderr)  # e.g. every connection lost
        records = np.fromfile(out, dtype=RECORD)
    summary = json.loads(done.stdout.decode().splitlines()[-1])
    if len(records) != summary["requests"]:
        raise MeasurementFailed(f"flood wrote {len(records)} records for {summary} requests")
    return Flooded(records, summary)


def ceiling(package: Path, rates: list[float], seconds: float, connections: int) -> dict[str, Any]:
    """The generator's own latency per rate against a server that refuses everything fast;
    the server's refusal rate under wrk (16 connections, closed loop) for scale."""
    from benchmarks.faults import VALID  # faults imports this module

    open_files()
    rows = []
    with servers.started("ours_shedding", package) as server:
        wrk.run(server.port, VALID, 16, 2)  # warm-up
        refused = wrk.run(server.port, VALID, 16, 3)
        for rate in rates:
            flood = run(server.port, post_request(VALID), [(seconds, rate)], connections, wait_s=30)
            answered = flood.records[flood.records["status"] > 0]
            sent = flood.records[flood.records["sent_ns"] >= 0]
            shed = int((answered["status"] == 503).sum())
            requests, cpu_s = flood.summary["requests"], flood.summary["cpu_s"]
            rows.append(
                {
                    "rate_rps": rate,
                    "requests": requests,
                    "answered_503": shed,
                    "not_503": requests - shed,
                    **_percentiles_ms("latency", answered["latency_ns"]),
                    # due -> written: the generator's own lateness plus any wait for a
                    # free connection
                    **_percentiles_ms("send_lag", sent["sent_ns"]),
                    "dispatch_lag_max_us": flood.summary["dispatch_lag_max_us"],
                    # its CPU time per request, whatever else the host ran meanwhile
                    "generator_cpu_us_per_request": round(cpu_s / requests * 1e6, 2),
                    "generator_one_core_rps": round(requests / cpu_s) if cpu_s else None,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {
        "connections": connections,
        "seconds": seconds,
        "shedding_server_wrk_rps": round(refused["rps"]),
        "rates": rows,
    }


def _percentiles_ms(name: str, values_ns: np.ndarray) -> dict[str, float | None]:
    """p50, p99 and max of ``values_ns`` in ms, as ``{name}_p50_ms`` etc. (None when empty)."""
    if not len(values_ns):
        return {f"{name}_{p}_ms": None for p in ("p50", "p99", "max")}
    p50, p99, top = np.percentile(values_ns / 1e6, [50, 99, 100])
    return {
        f"{name}_p50_ms": round(float(p50), 3),
        f"{name}_p99_ms": round(float(p99), 3),
        f"{name}_max_ms": round(float(top), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--rates", default="8000,11000,15000,20000", help="req/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    try:
        result = ceiling(args.package.resolve(), rates, args.seconds, args.connections)
    except BenchError as exc:
        print(f"flood: error: {exc}", file=sys.stderr)
        return exc.exit_status
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
