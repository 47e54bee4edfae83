"""The server under long load and under faults: a soak, a killed worker, an overload spike.

    python -m benchmarks.faults soak [--minutes 30] [--share 0.7]   # make soak
    python -m benchmarks.faults kill                                 # make bench-faults
    python -m benchmarks.faults overload [--factor 3]                #   (both)
    python -m benchmarks.faults refusal [--rounds 5]

Every mode starts our server with two workers pinned to the server core and measures its
capacity first (wrk, single-record JSON, 16 connections, on the load core); the offered load
is then a share of it, sent open loop from the load core (``Load``: each latency runs from
the request's scheduled time, so a stalled server cannot hide its queue). Prints one JSON
object; exits 1 when a mode's expectation fails (named under ``problems``), 2 when it could
not measure. Figures, not assertions: nothing here runs in ``make test``.

- soak: ``--share`` of capacity for ``--minutes``, single-record JSON plus 2 % malformed.
  Errors on valid requests (expected 0), malformed requests not answered 4xx, p99 in the
  first and last 5 minutes, RSS per worker after warm-up and at the end.
- kill: 30 % of capacity with the decision log at INFO and data capture at 100 %; one
  worker gets SIGKILL after 3 s. Requests that failed (expected: only those in flight on
  the killed worker's connections), seconds from the kill to the replacement's ``ready``
  line (expected < 2), and every request answered 200 found in the decision log and the
  capture files (expected: all).
- overload: 5 s at 50 % of capacity, 5 s at ``--factor`` (3) times it, 5 s at 50 %, sent
  over 2x capacity pre-opened connections by ``benchmarks.flood`` (C; ``Flood``): how
  fast the 503s come, the slowest 200 (expected within the server's deadline), and the
  seconds after the spike until p99 is back to normal (expected < 1: the first 100 ms whose
  p99 is within 2x the normal phase's, as is the p99 of all requests sent from then on);
  ``generator`` holds the generator's own counts (requests lost with their connection,
  unanswered, those that waited for a free connection, its largest dispatch lag).
- refusal: what a refusal costs against a scored request, one worker each: wrk (16
  connections, single-record JSON, 3 s) alternately on our server and on the same server
  held in overload (``benchmarks.shedding_server``: every request refused with 503), for
  ``--rounds`` rounds; the cost is scored req/s over refused req/s, per round.
"""

from __future__ import annotations

import argparse
import calendar
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks import flood, servers, wrk
from benchmarks.errors import BenchError, MeasurementFailed
from benchmarks.open_loop import _read_response, post_request
from serving.settings import Settings

VALID = b'{"instances": [[42.5,0,1,2,40.0,9,51.2,40,48.7,3,0.0,20,0.05,90,0.01]]}'
MALFORMED = (
    (b'{"instances": [[1, 2,', "application/json"),
    (b'{"instances": [[1, 2, 3]]}', "application/json"),
    (b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,nan\n", "text/csv"),
    (b"<xml/>", "application/xml"),
)
CONNECTIONS = 16


@dataclass(slots=True)
class Sample:
    scheduled_s: float  # from the start of the run
    malformed: bool
    status: int  # 0: the connection failed
    latency_s: float
    request_id: str


class Load:
    """Open-loop traffic at ``rate`` req/s over ``CONNECTIONS`` keep-alive sockets; every
    ``malformed_every``-th request is malformed. Each request names itself in
    ``X-Amzn-SageMaker-Inference-Id`` (``{prefix}-{i}``), the id the decision log and the
    capture files keep."""

    def __init__(self, port: int, malformed_every: int = 0, prefix: str = "r") -> None:
        self.port = port
        self.malformed_every = malformed_every
        self.prefix = prefix
        self._sent = 0

    def _payload(self, i: int) -> tuple[bytes, bool]:
        body, content_type = VALID, "application/json"
        malformed = self.malformed_every > 0 and i % self.malformed_every == 0
        if malformed:
            body, content_type = MALFORMED[(i // self.malformed_every) % len(MALFORMED)]
        inference_id = f"X-Amzn-SageMaker-Inference-Id: {self.prefix}-{i}\r\n"
        return post_request(body, content_type, headers=inference_id), malformed

    def run(self, phases: list[tuple[float, float]], t0: float | None = None) -> list[Sample]:
        """``phases``: (seconds, req/s) one after the other; the samples of all of them."""
        slots: list[float] = []
        offset = 0.0
        for seconds, rate in phases:
            n = int(seconds * rate)
            slots += [offset + k / rate for k in range(n)]
            offset += seconds
        first = self._sent
        self._sent += len(slots)
        start = (t0 if t0 is not None else time.perf_counter()) + 0.2
        parts: list[list[Sample]] = [[] for _ in range(CONNECTIONS)]

        def sender(k: int) -> None:
            sock = _connect(self.port)
            buffer = bytearray()
            for j in range(k, len(slots), CONNECTIONS):
                scheduled = start + slots[j]
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                i = first + j
                payload, malformed = self._payload(i)
                try:
                    sock.sendall(payload)
                    status = _read_response(sock, buffer)
                except OSError:
                    status = 0
                    sock.close()
                    buffer.clear()
                    sock = _connect(self.port)
                latency = time.perf_counter() - scheduled
                parts[k].append(Sample(slots[j], malformed, status, latency, f"{self.prefix}-{i}"))
            sock.close()

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(CONNECTIONS)]
        # a full collection over a minute of samples stalls every sender for tens of ms,
        # which would count as the server's latency: collect between runs instead
        gc.disable()
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            gc.enable()
        return sorted((s for part in parts for s in part), key=lambda s: s.scheduled_s)


def _connect(port: int) -> socket.socket:
    for _ in range(50):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            time.sleep(0.02)
    raise MeasurementFailed(f"cannot connect to 127.0.0.1:{port}")


def _p99_ms(samples: list[Sample]) -> float:
    ok = [s.latency_s for s in samples if s.status == 200 and not s.malformed]
    return float(np.percentile(ok, 99) * 1e3) if ok else float("nan")


def _workers(server: psutil.Process) -> list[psutil.Process]:
    """The worker processes under the supervisor (not multiprocessing's helpers)."""
    out = []
    for child in server.children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing.spawn" in cmd and "resource_tracker" not in cmd:
            out.append(child)
    return out


def _capacity(port: int) -> float:
    wrk.run(port, VALID, CONNECTIONS, 2)  # warm-up
    return wrk.run(port, VALID, CONNECTIONS, 5)["rps"]


def _server(package: Path, env: dict[str, str], log_dir: Path) -> Any:
    two = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", **env}
    return servers.started("ours", package, extra_env=two, log_dir=log_dir)


def soak(package: Path, minutes: float, share: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, _server(package, {}, Path(tmp)) as server:
        capacity = _capacity(server.port)
        rate = share * capacity
        load = Load(server.port, malformed_every=50, prefix="soak")
        supervisor = psutil.Process(server.proc.pid)  # taskset execs: same pid
        per_minute: list[dict[str, Any]] = []
        rss: list[dict[int, float]] = []
        valid_errors = malformed_not_4xx = 0
        failed_statuses: Counter[int] = Counter()  # 0: the connection was lost
        for minute in range(int(minutes)):
            samples = load.run([(60.0, rate)])
            gc.collect()
            valid = [s for s in samples if not s.malformed]
            bad = [s for s in samples if s.malformed]
            failed = [s.status for s in valid if s.status != 200]
            errors = len(failed)
            failed_statuses.update(failed)
            not_4xx = sum(1 for s in bad if not 400 <= s.status < 500)
            valid_errors += errors
            malformed_not_4xx += not_4xx
            rss.append({w.pid: w.memory_info().rss / 2**20 for w in _workers(supervisor)})
            per_minute.append(
                {
                    "minute": minute + 1,
                    "requests": len(samples),
                    "p50_ms": float(np.percentile([s.latency_s for s in valid], 50) * 1e3),
                    "p99_ms": _p99_ms(samples),
                    "valid_errors": errors,
                    "malformed_not_4xx": not_4xx,
                    "rss_mb": rss[-1],
                }
            )
            print(json.dumps(per_minute[-1]), file=sys.stderr, flush=True)
    warm = rss[min(1, len(rss) - 1)]  # after the first minutes' warm-up
    growth = {
        str(pid): (rss[-1][pid] - mb) / mb * 100 for pid, mb in warm.items() if pid in rss[-1]
    }
    first = per_minute[:5]
    last = per_minute[-5:]
    result = {
        "mode": "soak",
        "capacity_rps": capacity,
        "rate_rps": rate,
        "minutes": minutes,
        "requests": sum(m["requests"] for m in per_minute),
        "valid_errors": valid_errors,
        "valid_errors_by_status": {str(k): v for k, v in sorted(failed_statuses.items())},
        "malformed_not_4xx": malformed_not_4xx,
        "p99_first_5min_ms": max(m["p99_ms"] for m in first),
        "p99_last_5min_ms": max(m["p99_ms"] for m in last),
        "rss_growth_percent_per_worker": growth,
        "workers_replaced": sorted(set(rss[-1]) ^ set(warm)) != [],
        "per_minute": per_minute,
    }
    problems = []
    if valid_errors:
        problems.append(f"{valid_errors} valid requests failed")
    if malformed_not_4xx:
        problems.append(f"{malformed_not_4xx} malformed requests were not answered 4xx")
    if any(g >= 5.0 for g in growth.values()):
        problems.append("a worker's RSS grew 5 % or more after warm-up")
    result["problems"] = problems
    return result


def kill(package: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "INFO",
            "FRAUD_CAPTURE_DIR": str(root / "capture"),
            "FRAUD_CAPTURE_PERCENT": "100",
        }
        with _server(package, env, root) as server:
            capacity = _capacity(server.port)
            rate = 0.3 * capacity
            supervisor = psutil.Process(server.proc.pid)  # taskset execs: same pid
            workers = _workers(supervisor)
            before = {w.pid for w in workers}
            load = Load(server.port, prefix="kill")
            killed_at: list[float] = []
            held: dict[int, int] = {}

            def assassin() -> None:
                time.sleep(3.2)  # the load starts 0.2 s after it is scheduled
                # the worker holding most of the load's connections (one worker may have
                # accepted them all)
                for w in workers:
                    held[w.pid] = sum(
                        1
                        for c in w.net_connections(kind="tcp")
                        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
                    )
                victim = max(held, key=lambda pid: held[pid])
                killed_at.append(time.time())
                os.kill(victim, signal.SIGKILL)

            shooter = threading.Thread(target=assassin)
            t0 = time.perf_counter()
            shooter.start()
            samples = load.run([(8.0, rate)], t0=t0)
            shooter.join()
            time.sleep(0.5)
            after = {w.pid for w in _workers(supervisor)}
        log_lines = server.log.read_text(errors="replace").splitlines()
        decisions, ready = set(), []
        for line in log_lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("logger") == "fraud.decisions":
                decisions.add(doc.get("request_id"))
            elif doc.get("message") == "ready" and doc.get("pid") not in before:
                ready.append(_epoch(doc["time"]))
        captured = set()
        for path in (root / "capture").rglob("*.jsonl"):
            for line in path.read_text().splitlines():
                captured.add(json.loads(line)["eventMetadata"].get("inferenceId"))
    answered = {s.request_id for s in samples if s.status == 200}
    failed = [s for s in samples if s.status != 200]
    replaced_s = (min(ready) - killed_at[0]) if ready and killed_at else float("nan")
    result = {
        "mode": "kill",
        "capacity_rps": capacity,
        "rate_rps": rate,
        "requests": len(samples),
        "answered": len(answered),
        "failed": len(failed),
        "failed_statuses": sorted({s.status for s in failed}),
        "failed_within_s_of_kill": [
            round(s.scheduled_s + s.latency_s - 3.0, 3) for s in failed[:20]
        ],
        "connections_per_worker_at_kill": held,
        "replacement_pids": sorted(after - before),
        "replacement_ready_s": replaced_s,
        "answered_missing_from_decision_log": len(answered - decisions),
        "answered_missing_from_capture": len(answered - captured),
    }
    problems = []
    if len(failed) > CONNECTIONS:
        problems.append(f"{len(failed)} requests failed: more than the in-flight ones")
    if not replaced_s < 2.0:
        problems.append(f"the replacement was ready {replaced_s:.2f} s after the kill")
    for key in ("answered_missing_from_decision_log", "answered_missing_from_capture"):
        if result[key]:
            problems.append(f"{key}: {result[key]}")
    result["problems"] = problems
    return result


class Flood:
    """Open-loop traffic with far more connections than the server can serve at once
    (``connections``, opened before the run; ``benchmarks.flood``, in C): each request goes
    out at its scheduled time on an idle connection, so an overloaded server sees the crowd
    of waiting clients it would in production (the threaded ``Load`` caps the crowd at its 16
    connections and waits in the generator instead). A request finding no idle connection
    waits for one; that wait counts in its latency. ``summary``: the generator's own counts
    after a run (lost and unanswered requests, its largest dispatch lag)."""

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.connections = connections
        self.summary: dict[str, Any] = {}

    def run(self, phases: list[tuple[float, float]]) -> list[Sample]:
        """Every scheduled request, in schedule order: status 0 when its connection was
        lost, -1 (latency NaN) when it had no answer a minute after the last one was due."""
        flooded = flood.run(self.port, post_request(VALID), phases, self.connections)
        self.summary = flooded.summary
        r = flooded.records
        scheduled_s = (r["scheduled_ns"] / 1e9).tolist()
        latency_s = np.where(r["status"] < 0, np.nan, r["latency_ns"] / 1e9).tolist()
        return [
            Sample(t, False, status, latency, "")
            for t, status, latency in zip(scheduled_s, r["status"].tolist(), latency_s, strict=True)
        ]


def overload(package: Path, factor: float) -> dict[str, Any]:
    hard = flood.open_files()  # thousands of client sockets
    with tempfile.TemporaryDirectory() as tmp, _server(package, {}, Path(tmp)) as server:
        capacity = _capacity(server.port)
        normal, spike = 0.5 * capacity, factor * capacity
        # more waiting clients than the server can answer within its deadline
        crowd = Flood(server.port, connections=min(hard - 256, max(256, int(2 * capacity))))
        samples = crowd.run([(5.0, normal), (5.0, spike), (5.0, normal)])
    before = [s for s in samples if s.scheduled_s < 5.0]
    during = [s for s in samples if 5.0 <= s.scheduled_s < 10.0]
    after = [s for s in samples if s.scheduled_s >= 10.0]
    normal_p99 = _p99_ms(before)
    bound_ms = max(2 * normal_p99, normal_p99 + 2.0)
    buckets = list(_buckets(after, 10.0, 0.1))
    # back to normal at the first 100 ms whose p99 is within the bound and from which on the
    # p99 of all requests sent is too: the normal p99's own statistic, over a span (the normal
    # phase also has single 100 ms buckets over the bound: host stalls)
    recovered = next(
        (
            t
            for t, p in buckets
            if p <= bound_ms and _p99_ms([s for s in after if s.scheduled_s >= t]) <= bound_ms
        ),
        None,
    )
    shed = [s for s in during if s.status == 503]
    served = [s for s in during if s.status == 200]
    result = {
        "mode": "overload",
        "capacity_rps": capacity,
        "normal_rps": normal,
        "spike_offered_rps": spike,
        "connections": crowd.connections,
        "normal_p99_ms": normal_p99,
        "spike_200": len(served),
        "spike_503": len(shed),
        "spike_other": len(during) - len(served) - len(shed),
        "spike_503_p50_ms": _ms(shed, 50),
        "spike_503_p99_ms": _ms(shed, 99),
        "spike_503_max_ms": _ms(shed, 100),
        "spike_200_p99_ms": _ms(served, 99),
        "spike_200_max_ms": _ms(served, 100),
        "recovery_bound_ms": bound_ms,
        "recovered_after_s": None if recovered is None else round(recovered - 10.0, 2),
        "after_p99_ms_by_100ms": [round(p, 2) for _, p in buckets[:20]],
        # 100 ms buckets whose p99 is over the bound: in the normal phase, and after recovery
        "normal_buckets_over_bound": sum(p > bound_ms for _, p in _buckets(before, 0.0, 0.1)),
        "after_buckets_over_bound": sum(
            p > bound_ms for t, p in buckets if recovered is not None and t >= recovered
        ),
        "generator": crowd.summary,
    }
    problems = []
    if result["spike_other"]:
        problems.append(f"{result['spike_other']} spike requests got neither 200 nor 503")
    deadline_ms = Settings.deadline_ms  # the server runs with the default FRAUD_DEADLINE_MS
    if _ms(served, 100) > deadline_ms:
        problems.append(f"a 200 in the spike came after the {deadline_ms:g} ms deadline")
    if recovered is None or recovered - 10.0 > 1.0:
        problems.append("p99 was not back to normal within 1 s after the spike")
    result["problems"] = problems
    return result


def refusal(package: Path, rounds: int) -> dict[str, Any]:
    one = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    with (
        servers.started("ours", package, extra_env=one) as scoring,
        servers.started("ours_shedding", package, extra_env=one) as shedding,
    ):
        for port in (scoring.port, shedding.port):
            wrk.run(port, VALID, CONNECTIONS, 2)  # warm-up
        pairs = [
            (
                wrk.run(scoring.port, VALID, CONNECTIONS, 3),
                wrk.run(shedding.port, VALID, CONNECTIONS, 3),
            )
            for _ in range(rounds)
        ]
    costs = [scored["rps"] / refused["rps"] for scored, refused in pairs]
    result = {
        "mode": "refusal",
        "scored_rps": [round(scored["rps"]) for scored, _ in pairs],
        "refused_rps": [round(refused["rps"]) for _, refused in pairs],
        "refused_p99_us": [refused["p99_us"] for _, refused in pairs],
        "refusal_cost_percent": [round(100 * c, 1) for c in costs],
        "refusal_cost_percent_median": round(100 * float(np.median(costs)), 1),
    }
    problems = []
    if any(scored["non_2xx"] for scored, _ in pairs):
        problems.append("the scoring server answered some requests with an error")
    if any(refused["non_2xx"] == 0 for _, refused in pairs):
        problems.append("the shedding server answered 2xx")
    result["problems"] = problems
    return result


def _ms(samples: list[Sample], pct: float) -> float:
    values = [s.latency_s for s in samples]
    return float(np.percentile(values, pct) * 1e3) if values else float("nan")


def _buckets(samples: list[Sample], start: float, width: float) -> Iterator[tuple[float, float]]:
    """(bucket start, p99 ms of the 200s sent in it), by scheduled time."""
    by: dict[int, list[Sample]] = {}
    for s in samples:
        by.setdefault(int((s.scheduled_s - start) / width), []).append(s)
    for k in sorted(by):
        p99 = _p99_ms(by[k])
        if p99 == p99:  # a bucket with 200s
            yield start + k * width, p99


def _epoch(stamp: str) -> float:
    """'2026-12-03T08:01:02.345Z' (the log's UTC time) -> seconds since the epoch."""
    base, millis = stamp.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(millis) / 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("soak", "kill", "overload", "refusal"))
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--share", type=float, default=0.7)
    parser.add_argument("--factor", type=float, default=3.0, help="overload: spike / capacity")
    parser.add_argument("--rounds", type=int, default=5, help="refusal: wrk rounds per server")
    parser.add_argument("--out", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {servers.LOAD_CORE})  # the generator on the load core
    package = args.package.resolve()
    try:
        if args.mode == "soak":
            result = soak(package, args.minutes, args.share)
        elif args.mode == "kill":
            result = kill(package)
        elif args.mode == "refusal":
            result = refusal(package, args.rounds)
        else:
            result = overload(package, args.factor)
    except BenchError as exc:
        print(f"faults: error: {exc}", file=sys.stderr)
        return exc.exit_status
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
