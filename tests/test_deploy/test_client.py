"""The payment-system client against a real local HTTP server that answers, fails or sleeps."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from deploy.client import Decision, FallbackPolicy, FraudClient, sigv4_signer
from deploy.errors import SettingsError

FEATURES = [0.5] * 15


class _Handler(http.server.BaseHTTPRequestHandler):
    # behaviour per path: "ok", "slow", "flaky" (one 503, then ok), "bad" (400)
    calls: dict[str, int] = {}
    headers_seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        n = self.calls[self.path] = self.calls.get(self.path, 0) + 1
        self.headers_seen.append(dict(self.headers))
        if self.path == "/slow":
            time.sleep(0.5)
        if (self.path == "/flaky" and n == 1) or self.path == "/bad":
            status = 503 if self.path == "/flaky" else 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"predictions": [{"score": 0.01, "decision": "approve"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_score_arrives_within_the_deadline(server_url: str) -> None:
    decision = FraudClient(f"{server_url}/ok", deadline_s=2.0).score("m1", FEATURES, 10.0)
    assert decision == Decision("approve", 0.01, False, "scored", 1)


def test_slow_server_gets_the_fail_open_rule_decision_in_time(server_url: str) -> None:
    client = FraudClient(
        f"{server_url}/slow",
        deadline_s=0.1,
        default_policy=FallbackPolicy("open", review_above=500.0),
    )
    started = time.monotonic()
    small = client.score("m1", FEATURES, amount=20.0)
    elapsed = time.monotonic() - started
    assert small.fallback and small.decision == "approve" and small.score is None
    assert "no answer within 100 ms" in small.reason
    assert elapsed < 0.4  # the server sleeps 0.5 s: the client did not wait for it
    assert client.score("m1", FEATURES, amount=900.0).decision == "review"


def test_fail_closed_merchant_is_declined_when_no_score_arrives(server_url: str) -> None:
    client = FraudClient(
        f"{server_url}/slow", deadline_s=0.1, policies={"risky": FallbackPolicy("closed")}
    )
    assert client.score("risky", FEATURES, 5.0).decision == "decline"
    assert client.score("other", FEATURES, 5.0).decision == "approve"  # default: open


def test_one_retry_after_a_fast_503(server_url: str) -> None:
    decision = FraudClient(f"{server_url}/flaky", deadline_s=2.0).score("m1", FEATURES, 1.0)
    assert not decision.fallback and decision.attempts == 2


def test_client_errors_are_not_retried(server_url: str) -> None:
    decision = FraudClient(f"{server_url}/bad", deadline_s=2.0).score("m1", FEATURES, 1.0)
    assert decision.fallback and decision.reason == "HTTP 400" and decision.attempts == 1


def test_unreachable_front_door_retries_once_then_falls_back() -> None:
    client = FraudClient("http://127.0.0.1:9/invocations", deadline_s=1.0)
    decision = client.score("m1", FEATURES, 1.0)
    assert decision.fallback and decision.attempts == 2 and "unreachable" in decision.reason


def test_sigv4_signer_adds_the_authorization_header(server_url: str) -> None:
    signer = sigv4_signer("AKIDEXAMPLE", "secret", None, "eu-west-1")
    FraudClient(f"{server_url}/ok", deadline_s=2.0, signer=signer).score("m1", FEATURES, 1.0)
    auth = _Handler.headers_seen[-1]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"url": "ftp://x"}, "not http"), ({"url": "http://x/", "deadline_s": 0}, "positive")],
)
def test_bad_client_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FraudClient(**kwargs)  # type: ignore[arg-type]
