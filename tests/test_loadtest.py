"""The Locust load test's verdict, on a real server under a short ramp, plateau and spike."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import loadtest

SHORT = ["--ramp-s", "2", "--plateau-s", "3", "--spike-s", "3", "--plateau-users", "5"]
SHORT += ["--spike-users", "20"]
# latency bounds are the benchmark's business (make loadtest), not a test's
SHORT += ["--plateau-p99-ms", "60000", "--spike-single-p99-ms", "60000"]


def test_our_server_passes_and_in_the_spike_single_records_still_get_200(
    small_package: Path, tmp_path: Path
) -> None:
    verdict_file = tmp_path / "verdict.json"
    status = loadtest.run(small_package, SHORT, verdict_file)
    verdict = json.loads(verdict_file.read_text())
    assert status == 0, verdict["problems"]
    assert verdict["passed"] and verdict["plateau_valid_requests"] > 0
    for phase, counts in verdict["counts"].items():
        singles = {key.split(":")[1] for key in counts if key.startswith("single:")}
        assert singles == {"200"}, (phase, counts)  # bulk work never sheds real-time traffic
        batches = {key.split(":")[1] for key in counts if key.startswith("batch:")}
        assert batches <= ({"200", "503"} if phase == "spike" else {"200"}), (phase, counts)
        malformed = {key.split(":")[1] for key in counts if key.startswith("malformed:")}
        shed = {"503"} if phase == "spike" else set()
        assert all(s.startswith("4") or s in shed for s in malformed), (phase, counts)


def test_a_server_that_accepts_malformed_requests_fails_the_verdict(
    small_package: Path, tmp_path: Path
) -> None:
    # the HTTP floor answers 200 to anything, malformed bodies included
    verdict_file = tmp_path / "verdict.json"
    status = loadtest.run(small_package, SHORT, verdict_file, server="http_floor")
    verdict = json.loads(verdict_file.read_text())
    assert status == 1
    assert any("malformed request got 200" in p for p in verdict["problems"])
