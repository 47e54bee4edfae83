"""HTTP benchmark: our server beside its references, same machine, same run.

Servers (one worker each, pinned to core 0; ``benchmarks.servers``): ours (``serve`` on the
package), the HTTP floor (raw ASGI constant, same uvicorn stack) and the naive baseline
(FastAPI + PyTorch eager, one request at a time). Each server gets a warm-up run that is not
recorded, then:

- closed loop (``wrk`` on core 1) at concurrency 1, 4, 16 and 64, single-record JSON; ours
  also with single-record CSV and 100-record JSON and CSV bodies;
- open loop (``benchmarks.open_loop``, on core 1) at 500, 1,000 and 2,000 req/s: latency from
  the scheduled send time, so a slow server cannot hide queueing (coordinated omission).

The model floor is the server's own in-process scoring of one row. ``run`` returns percentiles
per cell plus the raw open-loop latencies (for plots); ``ratios`` divides ours by the
references.

    python -m benchmarks.http_bench [--package artifacts/package] [--seconds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import open_loop, servers, wrk
from benchmarks.errors import BenchError
from benchmarks.report import machine, save

ROW = [42.5, 0, 1, 2, 40.0, 9, 51.2, 40, 48.7, 3, 0.0, 20, 0.05, 90, 0.01]
CONCURRENCY = (1, 4, 16, 64)
OPEN_LOOP_RATES = (500, 1_000, 2_000)
P99_BUDGET_US = 10_000.0
JSON, CSV = "application/json", "text/csv"
REFERENCES = ("http_floor", "naive")


def bodies() -> dict[str, tuple[bytes, str]]:
    """Name -> (body, content type): one record and 100 records, JSON and CSV."""
    csv_row = ",".join(str(v) for v in ROW) + "\n"
    return {
        "json1": (json.dumps({"instances": [ROW]}).encode(), JSON),
        "csv1": (csv_row.encode(), CSV),
        "json100": (json.dumps({"instances": [ROW] * 100}).encode(), JSON),
        "csv100": ((csv_row * 100).encode(), CSV),
    }


def plan(name: str) -> list[tuple[str, str, int]]:
    """The cells for one server: (kind, body, concurrency or rate)."""
    cells = [("closed", "json1", c) for c in CONCURRENCY]
    cells += [("open", "json1", r) for r in OPEN_LOOP_RATES]
    if name.startswith("ours"):
        cells += [("closed", "csv1", 1), ("closed", "csv1", 16)]
        cells += [("closed", "json100", 16), ("closed", "csv100", 16)]
        cells += [("open", "csv1", 1_000)]
    return cells


def cell_name(kind: str, body: str, level: int) -> str:
    return f"closed_c{level}_{body}" if kind == "closed" else f"open_{level}_{body}"


def measure(
    name: str,
    package: Path,
    seconds: float,
    cells: list[tuple[str, str, int]],
    samples: dict[str, list[float]] | None = None,
    slow_us: int = 0,
) -> dict[str, dict[str, float]]:
    """Start ``name``, warm it up, run ``cells``; ``samples`` receives open-loop latencies."""
    payloads = bodies()
    out: dict[str, dict[str, float]] = {}
    with servers.running(name, package, slow_us=slow_us) as port:
        wrk.run(port, payloads["json1"][0], 16, 2)  # warm-up, not recorded
        for kind, body_name, level in cells:
            body, content_type = payloads[body_name]
            key = cell_name(kind, body_name, level)
            if kind == "closed":
                r = wrk.run(port, body, level, seconds, content_type)
                out[key] = {**r, "p999_us": float("nan")}
                continue
            keep: list[float] = []
            cell = open_loop.run(
                "127.0.0.1", port, level, seconds, body, content_type=content_type, samples=keep
            )
            out[key] = {
                "rps": cell["achieved_rps"],
                "p50_us": cell["p50_us"],
                "p90_us": float(np.percentile(keep, 90)) if keep else float("nan"),
                "p99_us": cell["p99_us"],
                "p999_us": cell["p999_us"],
                "non_2xx": cell["non_200"],
                "socket_errors": cell["errors"],
            }
            if samples is not None:
                samples[f"{name}/{key}"] = keep
    return out


def c1_interleaved(package: Path, rounds: int, seconds: float) -> dict[str, Any]:
    """Single-record p50 at concurrency 1, ours and the HTTP floor alternating ``rounds``
    times with both servers up (on the same core; the idle one sleeps): the host's noise
    moves both sides of each pair alike, so the median per-round difference is steadier
    than one cell of each."""
    body = bodies()["json1"][0]
    with servers.running("ours", package) as ours, servers.running("http_floor", package) as floor:
        for port in (ours, floor):
            wrk.run(port, body, 1, 1)  # warm-up, not recorded
        pairs = wrk.interleaved(ours, floor, body, rounds, seconds)
    ours_p50 = [a["p50_us"] for a, _ in pairs]
    floor_p50 = [b["p50_us"] for _, b in pairs]
    gaps = [o - f for o, f in zip(ours_p50, floor_p50, strict=True)]
    return {
        "rounds": rounds,
        "seconds": seconds,
        "ours_p50_us": ours_p50,
        "floor_p50_us": floor_p50,
        "median_gap_us": float(np.median(gaps)),
    }


def model_floor_us(package: Path, runs: int = 5_000) -> float:
    """The server's own scoring of one row, in process, in a tight loop: the package loaded
    as the server loads it (its variants timed and picked on this machine, one thread), then
    ``Scorer.score`` on one row, the call the server makes for a lone single-record request.
    (Until the ``fused`` variant this was ONNX Runtime ``run`` on model.onnx, 20.7 us here;
    measuring the server's own path keeps a faster model from widening the 60 us allowance.)"""
    from serving.scorer import Scorer

    scorer = Scorer(package, thread_options=[1])
    scorer.load()
    x = np.array([ROW], dtype=np.float32)
    for _ in range(200):
        scorer.score(x)
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        scorer.score(x)
        samples.append((time.perf_counter_ns() - t) / 1e3)
    return float(np.median(samples))


def best_rps(cells: dict[str, dict[str, float]], budget_us: float = P99_BUDGET_US) -> float:
    """Highest closed-loop single-record req/s whose p99 stays within the budget, counting
    only cells with no error answer (wrk counts a fast 503 as a request served)."""
    ok = [
        r["rps"]
        for k, r in cells.items()
        if k.startswith("closed_")
        and k.endswith("_json1")
        and r["p99_us"] <= budget_us
        and not r["non_2xx"]
        and not r.get("socket_errors")
    ]
    return max(ok, default=0.0)


def ratios(result: dict[str, Any]) -> dict[str, float]:
    s = result["servers"]
    ours, floor, naive = s["ours"], s["http_floor"], s["naive"]
    c1 = "closed_c1_json1"
    out = {
        "ours_p50_c1_over_http_floor": ours[c1]["p50_us"] / floor[c1]["p50_us"],
        "ours_p50_c1_minus_floors_us": ours[c1]["p50_us"]
        - floor[c1]["p50_us"]
        - result["model_floor_us"],
        "ours_p50_c1_interleaved_minus_floors_us": result["c1_interleaved"]["median_gap_us"]
        - result["model_floor_us"],
        "ours_rps_at_p99_10ms_over_naive": best_rps(ours) / max(best_rps(naive), 1.0),
        "ours_rps_c64_over_naive": ours["closed_c64_json1"]["rps"]
        / naive["closed_c64_json1"]["rps"],
    }
    for rate in OPEN_LOOP_RATES:
        key = f"open_{rate}_json1"
        out[f"ours_p99_open_{rate}_over_http_floor"] = ours[key]["p99_us"] / floor[key]["p99_us"]
        out[f"ours_p99_open_{rate}_over_naive"] = ours[key]["p99_us"] / naive[key]["p99_us"]
    return out


def run(
    package: Path, seconds: float, samples: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    wrk.require()  # fail before starting anything
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {servers.LOAD_CORE})  # the open-loop senders run here
    result: dict[str, Any] = {
        "machine": machine(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "seconds": seconds,
        "servers": {
            name: measure(name, package, seconds, plan(name), samples)
            for name in ("ours", *REFERENCES)
        },
        "c1_interleaved": c1_interleaved(package, rounds=6, seconds=min(seconds, 3.0)),
        "model_floor_us": model_floor_us(package),
    }
    result["ours_best_rps_at_p99_10ms"] = best_rps(result["servers"]["ours"])
    result["ratios"] = ratios(result)
    return result


def _us(v: float) -> str:
    return "" if v != v else f"{v:,.0f}"  # NaN (not measured) prints empty


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Machine: {result['machine']}; servers on core 0, load on core 1, "
        f"{result['seconds']:g} s per cell after an unrecorded warm-up. Model floor "
        f"(the server's in-process scoring, 1 row): {result['model_floor_us']:.1f} us.",
        "",
        "| server | cell | req/s | p50 us | p90 us | p99 us | p99.9 us | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cells in result["servers"].items():
        for cell, r in cells.items():
            lines.append(
                f"| {name} | {cell} | {r['rps']:,.0f} | {_us(r['p50_us'])} | "
                f"{_us(r['p90_us'])} | {_us(r['p99_us'])} | {_us(r['p999_us'])} | "
                f"{r['non_2xx']:.0f} |"
            )
    lines += ["", f"- ours_best_rps_at_p99_10ms: {result['ours_best_rps_at_p99_10ms']:,.0f}"]
    lines += [f"- {k}: {v:.2f}" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    try:
        result = run(args.package.resolve(), args.seconds)
    except BenchError as exc:
        print(f"http_bench: error: {exc}", file=sys.stderr)
        return exc.exit_status
    save(result, args.out_dir, "http")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
