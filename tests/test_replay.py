"""``fraud replay``: a logged decision reproduced from the decision log alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.test_server import ROW, Server, _opt_ml

ROOT = Path(__file__).resolve().parents[1]


def replay(log: Path, request_id: str, package: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", request_id, "--log", str(log)]
        + ["--model-dir", str(package)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout)


def test_logged_decisions_replay_to_the_same_scores_and_a_tampered_one_does_not(
    small_package: Path, tmp_path: Path
) -> None:
    srv = Server(_opt_ml(tmp_path, small_package))
    try:
        srv.wait_healthy()
        rows = [ROW, [*ROW]]
        rows[1][0], rows[1][4] = 310.0, 55.25  # another amount, another mean
        r = httpx.post(
            srv.url + "/invocations",
            content=json.dumps({"instances": rows}),
            headers={
                "content-type": "application/json",
                "x-amzn-sagemaker-inference-id": "vec-1",
            },
        )
        assert r.status_code == 200, r.text
        tx = {
            "transactions": [
                {
                    "transaction_id": "t-1",
                    "customer_id": "c-9",
                    "terminal_id": "m-4",
                    "amount": 42.5,
                    "timestamp": "2018-08-08T13:05:00Z",
                }
            ]
        }
        r = httpx.post(
            srv.url + "/invocations",
            content=json.dumps(tx),
            headers={"content-type": "application/json", "x-amzn-sagemaker-inference-id": "tx-1"},
        )
        assert r.status_code == 200, r.text
    finally:
        srv.stop()
    for request_id, n in (("vec-1", 2), ("tx-1", 1)):
        status, report = replay(srv.log, request_id, small_package)
        assert status == 0, report
        assert report["all_match"] is True and len(report["records"]) == n  # type: ignore[arg-type]
    # the same log with one logged score moved: replay says it does not match
    tampered = tmp_path / "tampered.log"
    lines = []
    for line in srv.log.read_text().splitlines():
        if '"request_id":"vec-1"' in line.replace(" ", "") and '"decision"' in line:
            rec = json.loads(line)
            rec["score"] = float(rec["score"]) + 1e-3
            line = json.dumps(rec)
        lines.append(line)
    tampered.write_text("\n".join(lines) + "\n")
    status, report = replay(tampered, "vec-1", small_package)
    assert status == 1 and report["all_match"] is False
    status, report = replay(tampered, "no-such-request", small_package)
    assert status == 1 and report["records"] == []
