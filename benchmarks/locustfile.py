"""Locust load test: payment traffic through a ramp, a plateau below capacity and a spike.

Traffic: ``PaymentSystem`` users send what card authorisation sends, one record per request
(JSON, mostly positional rows, some named fields carrying a transaction id), a few small CSV
batches, plus a small share of malformed requests that must get a 4xx; ``BatchReplay`` users
arrive only in the spike and replay large CSV batches, which pushes the server past its
capacity.

Shape (seconds, from ``--ramp-s``, ``--plateau-s``, ``--spike-s``): ramp to
``--plateau-users`` users, hold, then the spike adds ``--spike-users`` batch users, then
stop. Verdict, printed at the end and returned as the exit status (0 pass, 1 fail):

- ramp and plateau (below capacity): every valid request gets 200;
- plateau: p99 of valid requests <= ``--plateau-p99-ms``;
- spike: single-record requests still get 200, with p99 <= ``--spike-single-p99-ms``
  (real-time traffic is not starved by the bulk replays: the server's bulk lane queues or
  sheds those instead); batches get 200 or a 503 within ``--fast-503-ms`` (no timeouts, no
  connection errors, no other 5xx);
- malformed requests get a 4xx (in the spike also a fast 503: the server sheds load before
  it decodes a body).

    locust -f benchmarks/locustfile.py --headless --host http://127.0.0.1:8080
    make loadtest       # starts the server too (benchmarks/loadtest.py)
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

from locust import LoadTestShape, User, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

from core.feature_names import FEATURE_NAMES

PHASES = ("ramp", "plateau", "spike")
MALFORMED = {
    "bad_json": (b'{"instances": [[1, 2,', "application/json"),
    "wrong_count": (b'{"instances": [[1, 2, 3]]}', "application/json"),
    "nan": (b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,nan\n", "text/csv"),
    "negative_count": (
        b'{"instances": [[10,0,0,-3,10,1,10,1,10,1,0,1,0,1,0]]}',
        "application/json",
    ),
    "unknown_type": (b"<xml/>", "application/xml"),
    "empty": (b"", "application/json"),
}


def feature_row(rng: random.Random) -> list[float]:
    """One plausible feature row (the order of core.features.FEATURE_NAMES)."""
    row: list[float] = []
    for name in FEATURE_NAMES:
        if name == "amount" or "_mean_amount_" in name:
            row.append(round(math.exp(rng.gauss(3.7, 0.9)), 2))
        elif name in ("is_weekend", "is_night"):
            row.append(float(rng.random() < 0.3))
        elif "_count_" in name:
            row.append(float(rng.randint(0, 40)))
        elif name.startswith("terminal_risk_"):
            row.append(round(rng.random() * 0.2, 4))
        else:
            row.append(round(rng.random(), 4))
    return row


# -- the verdict ----------------------------------------------------------------------------


class Tally:
    """Per phase: valid-request latencies and the violations seen (one instance per run)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bounds = (10.0, 30.0, 15.0)  # phase lengths, set from the options at test start
        self.latencies_ms: dict[str, list[float]] = {p: [] for p in PHASES}
        self.single_ms: dict[str, list[float]] = {p: [] for p in PHASES}
        self.counts: dict[str, dict[str, int]] = {p: {} for p in PHASES}
        self.violations: list[str] = []

    def phase(self) -> str:
        elapsed = time.monotonic() - self.started
        ramp, plateau, _ = self.bounds
        return "ramp" if elapsed < ramp else "plateau" if elapsed < ramp + plateau else "spike"

    def record(
        self, kind: str, status: int, elapsed_ms: float, error: str | None, opts: Any
    ) -> None:
        phase = self.phase()
        key = f"{kind}:{status or error}"
        self.counts[phase][key] = self.counts[phase].get(key, 0) + 1
        fast_shed = phase == "spike" and status == 503 and elapsed_ms <= opts.fast_503_ms
        if kind == "malformed":
            # past capacity the server sheds before it reads a body: a fast 503 is fine there
            if not (400 <= status < 500 or fast_shed):
                self._violate(f"{phase}: a malformed request got {status or error}")
            return
        if phase == "spike" and kind == "single":
            if status != 200:
                self._violate(f"spike: a single-record request got {status or error}")
        elif phase == "spike":
            if status != 200 and not fast_shed:
                self._violate(
                    f"spike: a valid request got {status or error} after {elapsed_ms:.0f} ms"
                )
        elif status != 200:
            self._violate(f"{phase} (below capacity): a valid request got {status or error}")
        if status == 200:
            self.latencies_ms[phase].append(elapsed_ms)
            if kind == "single":
                self.single_ms[phase].append(elapsed_ms)

    def _violate(self, what: str) -> None:
        if len(self.violations) < 1_000:
            self.violations.append(what)

    def verdict(self, opts: Any) -> dict[str, Any]:
        plateau = self.latencies_ms["plateau"]
        p99 = _p99(plateau)
        single = _p99(self.single_ms["spike"])
        problems = sorted(set(self.violations))
        if not plateau:
            problems.append("plateau: no valid request succeeded (nothing was measured)")
        elif p99 > opts.plateau_p99_ms:
            problems.append(f"plateau: p99 {p99:.1f} ms is over the {opts.plateau_p99_ms} ms bound")
        if not self.single_ms["spike"]:
            problems.append("spike: no single-record request succeeded (nothing was measured)")
        elif single > opts.spike_single_p99_ms:
            problems.append(
                f"spike: single-record p99 {single:.1f} ms is over the "
                f"{opts.spike_single_p99_ms} ms bound"
            )
        return {
            "passed": not problems,
            "problems": problems,
            "plateau_p99_ms": p99,
            "plateau_valid_requests": len(plateau),
            "spike_single_p99_ms": single,
            "spike_single_requests": len(self.single_ms["spike"]),
            "counts": self.counts,
        }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else math.nan


TALLY = Tally()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--ramp-s", type=float, default=10.0)
    parser.add_argument("--plateau-s", type=float, default=30.0)
    parser.add_argument("--spike-s", type=float, default=15.0)
    parser.add_argument("--plateau-users", type=int, default=20, help="10 req/s each")
    parser.add_argument("--spike-users", type=int, default=40, help="batch users added")
    # Locust's own gevent client on one shared core adds milliseconds of its own: this bound
    # catches a server in trouble; the server's own percentiles come from wrk / open loop
    parser.add_argument("--plateau-p99-ms", type=float, default=50.0)
    parser.add_argument("--fast-503-ms", type=float, default=1_500.0)
    # an authorisation that waits longer has timed out at the payment system
    parser.add_argument("--spike-single-p99-ms", type=float, default=10.0)
    parser.add_argument("--verdict-file", default="", help="also write the verdict here")


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    TALLY.started = time.monotonic()
    TALLY.bounds = (opts.ramp_s, opts.plateau_s, opts.spike_s)


@events.quitting.add_listener
def _verdict(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    result = TALLY.verdict(opts)
    print(json.dumps(result, indent=2))
    if opts.verdict_file:
        with open(opts.verdict_file, "w") as out:
            json.dump(result, out, indent=2)
    environment.process_exit_code = 0 if result["passed"] else 1


# -- the users ------------------------------------------------------------------------------


class Payments(FastHttpUser):
    abstract = True
    network_timeout = 10.0
    connection_timeout = 5.0

    def post(self, kind: str, name: str, body: bytes, content_type: str) -> None:
        opts = self.environment.parsed_options
        started = time.perf_counter()
        with self.client.post(
            "/invocations",
            data=body.decode(),
            headers={"Content-Type": content_type},
            name=name,
            catch_response=True,
        ) as response:
            elapsed_ms = (time.perf_counter() - started) * 1e3
            status = response.status_code or 0
            error = None if status else type(response.error).__name__
            TALLY.record(kind, status, elapsed_ms, error, opts)
            wanted = 400 <= status < 500 if kind == "malformed" else status == 200
            if wanted:
                response.success()
            else:
                response.failure(f"status {status or error}")


class PaymentSystem(Payments):
    """Card authorisations: one record per request."""

    wait_time = constant_throughput(10)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(80)
    def single_json(self) -> None:
        body = json.dumps({"instances": [feature_row(self.rng)]}).encode()
        self.post("single", "json: 1 record", body, "application/json")

    @task(15)
    def named_json(self) -> None:
        record: dict[str, object] = dict(zip(FEATURE_NAMES, feature_row(self.rng), strict=True))
        record["transaction_id"] = f"tx-{self.rng.getrandbits(48):012x}"
        body = json.dumps({"instances": [record]}).encode()
        self.post("single", "json: 1 named record", body, "application/json")

    @task(3)
    def csv_batch(self) -> None:
        rows = [feature_row(self.rng) for _ in range(self.rng.randint(10, 50))]
        body = "".join(",".join(map(str, r)) + "\n" for r in rows).encode()
        self.post("batch", "csv: batch", body, "text/csv")

    @task(2)
    def malformed(self) -> None:
        kind = self.rng.choice(sorted(MALFORMED))
        body, content_type = MALFORMED[kind]
        self.post("malformed", f"malformed: {kind}", body, content_type)


class BatchReplay(Payments):
    """A batch job replaying large CSV files as fast as it can (the spike)."""

    wait_time = constant_throughput(100)

    def on_start(self) -> None:
        rng = random.Random(7)
        rows = [feature_row(rng) for _ in range(500)]
        self.body = "".join(",".join(map(str, r)) + "\n" for r in rows).encode()

    @task
    def replay(self) -> None:
        self.post("batch", "csv: 500-row replay", self.body, "text/csv")


class RampPlateauSpike(LoadTestShape):
    def tick(self) -> tuple[int, float, list[type[User]] | None] | None:
        assert self.runner is not None
        opts: Any = self.runner.environment.parsed_options
        t = self.get_run_time()
        users = opts.plateau_users
        if t < opts.ramp_s:
            return max(1, round(users * t / opts.ramp_s)), users, [PaymentSystem]
        if t < opts.ramp_s + opts.plateau_s:
            return users, users, [PaymentSystem]
        if t < opts.ramp_s + opts.plateau_s + opts.spike_s:
            # the payment users stay; every user added now is a batch replay (locust keeps
            # running users whose class leaves the list and spawns new ones from the list)
            return users + opts.spike_users, opts.spike_users, [BatchReplay]
        return None
