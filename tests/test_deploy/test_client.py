"""The payment-system client against one stub front door per region, real HTTP servers on
loopback that answer, fail (5xx), throttle (429), hang past the deadline or refuse bad input.
The failover drill walks a whole outage: region A fails, traffic moves to B within the
deadline with no request failing, and comes back to A once A is healthy."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from deploy.client import Decision, FallbackPolicy, FraudClient, Region, sigv4_signer
from deploy.errors import SettingsError

FEATURES = [0.5] * 15
A, B = "eu-west-1", "us-east-1"


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a hanging request closed its socket: expected here


class StubRegion:
    """One region's front door: ``mode`` is "ok", "5xx", "throttle", "hang", "bad"
    or "drop" (answers, then closes the connection)."""

    def __init__(self, name: str) -> None:
        self.name, self.mode = name, "ok"
        self.requests = 0
        self.connections = 0
        self.authorizations: list[str] = []
        self.release = threading.Event()  # ends hanging requests at teardown
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client's pool is observable

            def setup(self) -> None:
                stub.connections += 1
                super().setup()

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                stub.requests += 1
                stub.authorizations.append(self.headers.get("Authorization", ""))
                if stub.mode == "hang":
                    stub.release.wait(5.0)
                status = {"5xx": 503, "throttle": 429, "bad": 400}.get(stub.mode, 200)
                body = b'{"message": "failed"}'
                if status == 200:
                    prediction = {"score": 0.01, "decision": "approve", "region": stub.name}
                    body = json.dumps({"predictions": [prediction]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = stub.mode == "drop"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.region = Region(name, f"http://127.0.0.1:{self.server.server_address[1]}/invocations")

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


OPENED: list[FraudClient] = []


@pytest.fixture()
def regions() -> Iterator[tuple[StubRegion, StubRegion]]:
    a, b = StubRegion(A), StubRegion(B)
    yield a, b
    while OPENED:
        OPENED.pop().close()
    a.stop()
    b.stop()


def _client(a: StubRegion | Region, b: StubRegion, **kwargs: object) -> FraudClient:
    settings: dict[str, object] = {"deadline_s": 2.0, "cooldown_s": 60.0} | kwargs
    first = a.region if isinstance(a, StubRegion) else a
    OPENED.append(FraudClient([first, b.region], **settings))  # type: ignore[arg-type]
    return OPENED[-1]


def test_failover_drill_moves_to_b_and_back_to_a(regions: tuple[StubRegion, StubRegion]) -> None:
    a, b = regions
    client = _client(a, b, deadline_s=1.0, cooldown_s=0.3)
    # both healthy: A answers, over one kept-alive connection
    for _ in range(5):
        assert client.score("m1", FEATURES, 10.0).region == A
    assert (a.requests, a.connections, b.requests) == (5, 1, 0)

    # A hangs: its attempt is cut at 60 % of the deadline and B still answers in time
    a.mode = "hang"
    decision = client.score("m1", FEATURES, 10.0)
    assert not decision.fallback and decision.region == B
    assert decision.trail == (f"{A}: no answer within 600 ms", f"{B}: scored")
    # A is marked down: the next calls go straight to B, none fails
    before = a.requests
    for _ in range(5):
        assert client.score("m1", FEATURES, 10.0) == Decision(
            "approve", 0.01, False, "scored", 1, B, (f"{B}: scored",), degraded=True
        )
    assert a.requests == before

    # A recovers; once its cooldown has passed it is tried first again and keeps the traffic
    a.mode = "ok"
    time.sleep(0.35)
    assert [client.score("m1", FEATURES, 10.0).region for _ in range(3)] == [A, A, A]


@pytest.mark.parametrize(("mode", "outcome"), [("5xx", "HTTP 503"), ("throttle", "HTTP 429")])
def test_5xx_and_throttles_fail_over_at_once(
    regions: tuple[StubRegion, StubRegion], mode: str, outcome: str
) -> None:
    a, b = regions
    a.mode = mode
    decision = _client(a, b).score("m1", FEATURES, 10.0)
    assert decision.region == B and decision.attempts == 2 and not decision.fallback
    assert decision.trail == (f"{A}: {outcome}", f"{B}: scored")


def test_the_fallback_decides_only_when_every_region_fails(
    regions: tuple[StubRegion, StubRegion],
) -> None:
    a, b = regions
    a.mode, b.mode = "5xx", "hang"
    client = _client(
        a, b, deadline_s=0.2, default_policy=FallbackPolicy("open", review_above=500.0)
    )
    small = client.score("m1", FEATURES, amount=20.0)
    assert small.fallback and small.decision == "approve" and small.score is None
    assert small.reason.startswith("every region failed") and small.attempts == 2
    assert client.score("m1", FEATURES, amount=900.0).decision == "review"
    closed = _client(a, b, deadline_s=0.2, policies={"risky": FallbackPolicy("closed")})
    assert closed.score("risky", FEATURES, 5.0).decision == "decline"


def test_a_refused_request_is_not_sent_to_the_other_region(
    regions: tuple[StubRegion, StubRegion],
) -> None:
    a, b = regions
    a.mode = "bad"
    decision = _client(a, b).score("m1", FEATURES, 1.0)
    assert decision.fallback and decision.reason == "HTTP 400" and decision.attempts == 1
    assert b.requests == 0


def test_unreachable_region_fails_over(regions: tuple[StubRegion, StubRegion]) -> None:
    a, b = regions
    dead = Region(A, "http://127.0.0.1:9/invocations")
    decision = _client(dead, b, deadline_s=1.0).score("m1", FEATURES, 1.0)
    assert decision.region == B and decision.trail[0].startswith(f"{A}: unreachable")


def test_each_region_gets_a_signature_for_its_own_region(
    regions: tuple[StubRegion, StubRegion],
) -> None:
    a, b = regions
    signer = sigv4_signer("AKIDEXAMPLE", "secret", None)
    client = _client(a, b, signer=signer)
    client.score("m1", FEATURES, 1.0)
    a.mode = "5xx"
    client.score("m1", FEATURES, 1.0)
    for stub in (a, b):
        for auth in stub.authorizations:
            assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            assert f"/{stub.name}/execute-api/aws4_request" in auth


def test_a_connection_the_server_closed_is_replaced_not_failed_over(
    regions: tuple[StubRegion, StubRegion],
) -> None:
    a, b = regions
    a.mode = "drop"  # answers, then closes the kept-alive connection without saying so
    client = _client(a, b)
    for _ in range(3):
        assert client.score("m1", FEATURES, 1.0).trail == (f"{A}: scored",)
    assert a.connections == 3 and b.requests == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regions": [Region(A, "http://x/")], "deadline_s": 0}, "positive"),
        ({"regions": []}, "at least one region"),
        ({"regions": [Region(A, "http://x/"), Region(A, "http://y/")]}, "listed twice"),
        ({"regions": [Region(A, "http://x/")], "first_attempt_share": 0.9}, "outside"),
    ],
)
def test_bad_client_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FraudClient(**kwargs)  # type: ignore[arg-type]


def test_bad_region_url_is_refused() -> None:
    with pytest.raises(SettingsError, match="not http"):
        Region(A, "ftp://x")


def test_a_merchant_can_let_its_rule_decide_degraded_scores(
    regions: tuple[StubRegion, StubRegion],
) -> None:
    a, b = regions
    a.mode = "5xx"
    strict = {"strict": FallbackPolicy("closed", degraded="rule")}
    client = _client(a, b, policies=strict)
    ruled = client.score("strict", FEATURES, 10.0)
    assert ruled.fallback and ruled.decision == "decline" and ruled.degraded
    assert ruled.score == 0.01 and ruled.reason.startswith(f"degraded: scored in {B}")
    lenient = client.score("other", FEATURES, 10.0)
    assert not lenient.fallback and lenient.decision == "approve" and lenient.degraded
