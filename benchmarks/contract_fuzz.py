"""``make fuzz``: schemathesis against a real server on the demo package, many cases.

The same run as ``tests/test_contract.py`` (every check on the server's own
``/openapi.json``, plus the checks in ``benchmarks.contract_hooks``), longer: the figures go
to RESULTS.md. positive_data_acceptance is left out: JSON Schema cannot say what a valid .npy
body or CSV row is, so a schema-valid string may rightly get 400.

All four phases run: examples, coverage, fuzzing (``--examples`` cases per operation), then
the stateful phase (``--stateful-examples`` scenarios), which follows the document's links from
a scored transaction to its label and to its retry. The run's NDJSON event stream gives the
cases per phase. Exit status 1 on any failure or error, or when fewer than ``--min-cases``
cases ran.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import servers
from serving.transaction_requests import MAX_EPOCH_S

ROOT = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
PHASES = ("examples", "coverage", "fuzzing", "stateful")
LAST_SECOND = int(MAX_EPOCH_S) - 1  # never too old, never forgotten: nothing comes later
# the fuzzed server takes events up to LAST_SECOND: with the default (300 s ahead of its clock
# at most) no event could stay newest whatever the fuzzing sends, and the stateful links from
# a scored transaction would rarely find one that scores
FUZZ_SERVER_ENV = {"FRAUD_MAX_CLOCK_AHEAD_S": "1e11"}


@dataclass
class FuzzResult:
    status: int  # schemathesis' exit status
    generated: int  # cases, all phases
    output: str  # the tail of its report
    per_phase: Counter[str] = field(default_factory=Counter)  # cases per phase
    linked: int = 0  # stateful steps built from a link (a label or a retry of a transaction)
    scored_transactions: int = 0  # 200s to transaction requests: each ran the held-record check


def _config(stateful_examples: int) -> str:
    """schemathesis.toml for the run: the stateful phase's own budget (CLI ``-n`` sets the
    other phases'; a phase's setting wins over it), and half of the transaction timestamps at
    the last second the server accepts. The store refuses an event older than the skew
    behind the newest it has seen, and the coverage phase sends a timestamp just under 1e11
    early: after it, a uniform draw from 0..1e11 s is all but always too old, so without
    these the stateful phase would seldom score a transaction to follow a link from."""
    return (
        "[dictionaries]\n"
        f"last-second = {{ values = [{LAST_SECOND}] }}\n"
        "[parameters]\n"
        '"body.transactions[*].timestamp" = { dictionary = "last-second", probability = 0.5 }\n'
        "[phases.stateful.generation]\n"
        f"max-examples = {stateful_examples}\n"
        'codec = "ascii"\n'
    )


def _tally(events: Path, result: FuzzResult) -> None:
    """Cases per phase, link-built steps and scored transactions from the NDJSON events."""
    with events.open() as lines:
        for line in lines:
            if '"ScenarioFinished"' not in line[:40]:
                continue
            finished = json.loads(line)["ScenarioFinished"]
            recorder = finished["recorder"]
            cases = recorder.get("cases", {})  # none in a skipped scenario
            result.per_phase[finished["phase"]] += len(cases)
            result.linked += sum(1 for c in cases.values() if c.get("is_transition_applied"))
            for interaction in recorder.get("interactions", {}).values():
                request, response = interaction["request"], interaction["response"]
                if response is None or response["status_code"] != 200:
                    continue
                body = (request.get("body") or {}).get("$base64", "")
                if body and b'"transactions"' in base64.b64decode(body):
                    result.scored_transactions += 1


def fuzz(url: str, examples: int, seed: int, workdir: Path, stateful_examples: int) -> FuzzResult:
    """schemathesis run on ``url``'s document; ``workdir`` keeps its config and reports."""
    config = workdir / "schemathesis.toml"
    config.write_text(_config(stateful_examples))
    reports = workdir / "schemathesis-report"
    events = reports / "events.ndjson"
    done = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/openapi.json"]
        + ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]
        + ["-n", str(examples), "--seed", str(seed), "--no-color"]
        + ["--report", "ndjson", "--report-ndjson-path", str(events)],
        cwd=workdir,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "benchmarks.contract_hooks",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=3 * 3_600,
    )
    found = re.search(r"(\d+) generated", done.stdout)
    result = FuzzResult(
        done.returncode, int(found.group(1)) if found else 0, done.stdout[-6_000:] + done.stderr
    )
    if events.exists():
        _tally(events, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--examples", type=int, default=8_000, help="per operation")
    parser.add_argument("--stateful-examples", type=int, default=2_000, help="scenarios")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-cases", type=int, default=20_000, help="fail below this")
    args = parser.parse_args(argv)
    with (
        servers.running("ours", args.package, extra_env=FUZZ_SERVER_ENV) as port,
        tempfile.TemporaryDirectory() as tmp,
    ):
        started = time.monotonic()
        result = fuzz(
            f"http://127.0.0.1:{port}", args.examples, args.seed, Path(tmp), args.stateful_examples
        )
        wall_s = time.monotonic() - started
    print(result.output)
    phases = ", ".join(f"{p} {result.per_phase[p]:,}" for p in PHASES)
    print(
        f"fuzz: {result.generated:,} cases ({phases}) in {wall_s:.0f} s, exit status "
        f"{result.status}; {result.linked:,} stateful steps built from a link, "
        f"{result.scored_transactions:,} scored transactions checked for label and retry"
    )
    if result.status != 0:
        return 1
    if result.generated < args.min_cases:
        print(f"fuzz: {result.generated:,} cases is under --min-cases {args.min_cases:,}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
