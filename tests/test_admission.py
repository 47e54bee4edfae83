"""The admission protocol byte by byte: requests fed to it in every split a socket could
deliver, answers read off a recording transport, the app behind it a small ASGI app that
sheds /invocations bodies up to ``SMALL`` bytes. (tests/test_server.py covers the same
behaviour on a real server.)"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from serving.admission import (
    PASS_ADMITTED_READS,
    AdmissionProtocol,
    LoopPasses,
)
from serving.metrics import ServerMetrics
from tests.test_server import Answer, parse_responses

SMALL = 64


class SheddingApp:
    """Sheds every /invocations request with a body of at most SMALL bytes, as ``FraudApp``
    does: a request it gets itself is answered 503 ``app shed``, counted like the protocol's
    refusals; others 200 with ``app:`` and their body, once ``release`` is set."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(shed_wait_ms=100.0, max_queue_rows=8)
        self.batcher = SimpleNamespace(full=True)  # behind: ``sheds`` decides
        self.metrics = ServerMetrics([])
        self.ids = 0
        self.seen: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    def begin_drain(self) -> None:
        pass

    def sheds(self, body_bytes: int, loop_behind: bool = False) -> bool:
        return body_bytes <= SMALL and (loop_behind or self.batcher.full)

    def shed_message(self) -> str:
        return f"queue full or behind (waited over {self.settings.shed_wait_ms:g} ms)"

    def next_id(self) -> str:
        self.ids += 1
        return f"gen-{self.ids}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(f"{scope['method']} {scope['path']}")
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await self.release.wait()
        status, out = 200, b"app:" + body
        if scope["path"] == "/invocations" and self.sheds(len(body)):
            status, out = 503, b"app shed"
            self.metrics.requests.inc(("/invocations", "503"))
        headers = [(b"content-length", str(len(out)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.closed_by_server = False  # before the client left

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def post(
    body: bytes, *headers: bytes, target: bytes = b"/invocations", version: bytes = b"1.1"
) -> bytes:
    head = b"POST %s HTTP/%s\r\nHost: x\r\n" % (target, version)
    head += b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def connection(app: SheddingApp, **config: Any) -> tuple[AdmissionProtocol, Transport]:
    """A new connection's protocol on the running loop, uvicorn configured with ``config``."""
    settings = uvicorn.Config(
        app, http=AdmissionProtocol, lifespan="off", log_config=None, **config
    )
    settings.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 03 Dec 2026 10:00:00 GMT"), (b"server", b"uv")]
    protocol = AdmissionProtocol(settings, state, {}, asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def exchange(
    app: SheddingApp, chunks: list[bytes], before_release: int = 0
) -> tuple[list[Answer], Transport]:
    """Feed ``chunks`` to a new connection's protocol, letting the loop run between them
    (the app answers only after the ``before_release``-th chunk when that is set); the
    responses written, parsed, and the transport."""

    async def run() -> Transport:
        if before_release:
            app.release.clear()
        protocol, transport = connection(app)
        for i, chunk in enumerate(chunks, 1):
            protocol.data_received(chunk)
            for _ in range(5):
                await asyncio.sleep(0)
            if i == before_release:
                app.release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        transport.closed_by_server = transport.closed
        protocol.connection_lost(None)  # the client leaves: uvicorn's timers stop
        return transport

    transport = asyncio.run(run())
    answers, rest = parse_responses(bytes(transport.out))
    assert rest == b""
    return answers, transport


def test_a_refused_body_is_skipped_exactly_however_the_bytes_arrive() -> None:
    # the refused body reads like a request: parsed as one, it would get an answer of its own
    refused = post(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    scored = post(b"x" * (SMALL + 1))
    stream = refused + scored + refused
    for size in (1, 2, 7, 50):
        app = SheddingApp()
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        answers, transport = exchange(app, chunks)
        assert [status for status, _, _ in answers] == [503, 200, 503], size
        assert answers[1][2] == b"app:" + b"x" * (SMALL + 1)
        assert json.loads(answers[0][2])["error"]["code"] == "overloaded"
        assert json.loads(answers[2][2])["error"]["code"] == "overloaded"
        assert app.seen == ["POST /invocations"]  # the refused two never reached the app
        assert not transport.closed_by_server
        assert app.metrics.requests.values == {("/invocations", "503"): 2}


def test_the_refusal_is_the_apps_overloaded_error_with_its_request_id() -> None:
    answers, _ = exchange(
        SheddingApp(),
        [post(b"{}") + post(b"{}", b'X-Amzn-SageMaker-Inference-Id: caller "7"')],
    )
    (status, headers, body), (_, sent_headers, sent_body) = answers
    assert status == 503 and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "overloaded" and "100 ms" in error["message"]
    assert error["request_id"] == headers["x-request-id"] == "gen-1"
    assert json.loads(sent_body)["error"]["request_id"] == 'caller "7"'
    assert sent_headers["x-request-id"] == 'caller "7"'
    assert headers["date"] == "Thu, 03 Dec 2026 10:00:00 GMT" and headers["server"] == "uv"


def test_an_http_1_0_refusal_closes_the_connection() -> None:
    answers, transport = exchange(SheddingApp(), [post(b"{}", version=b"1.0")])
    assert answers[0][0] == 503 and answers[0][1]["connection"] == "close"
    assert transport.closed_by_server


def test_routes_chunked_bodies_and_100_continue_reach_the_app() -> None:
    app = SheddingApp()
    chunked = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    answers, _ = exchange(
        app,
        [
            b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
            post(b"{}", target=b"/invocationsx"),
            chunked,
            post(b"{}", b"Expect: 100-continue"),
            post(b"{}", target=b"/invocations?a=1"),  # the same route: refused
        ],
    )
    assert app.seen == ["GET /ping", "POST /invocationsx", "POST /invocations", "POST /invocations"]
    bodies = [body for _, _, body in answers]
    assert bodies[:5] == [b"app:", b"app:{}", b"app shed", b"", b"app shed"]  # 100 Continue
    assert json.loads(bodies[5])["error"]["code"] == "overloaded"


def test_a_request_pipelined_behind_an_unanswered_one_waits_its_turn() -> None:
    # the first request is still with the app when the second arrives: answering the second
    # at once would put its answer first, so the app gets it and sheds it itself
    app = SheddingApp()
    first = post(b"y" * (SMALL + 1))
    answers, _ = exchange(app, [first + post(b"{}")], before_release=1)
    assert [body for _, _, body in answers] == [b"app:" + b"y" * (SMALL + 1), b"app shed"]
    assert app.seen == ["POST /invocations", "POST /invocations"]


def test_requests_read_whole_are_refused_and_the_others_reach_the_app() -> None:
    # a read holding exactly one request the app sheds is answered without the connection's
    # parser; every other read (two requests, a request the app takes, another route) goes
    # to the parser, and the answers keep the requests' order
    refused = post(b"{}")
    app = SheddingApp()
    reads = [refused, post(b"x" * (SMALL + 1)), refused, refused + refused]
    reads += [b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", refused[:9], refused[9:], refused]
    answers, transport = exchange(app, reads)
    assert [status for status, _, _ in answers] == [503, 200, 503, 503, 503, 200, 503, 503]
    assert app.seen == ["POST /invocations", "GET /ping"]
    assert [
        json.loads(body)["error"]["request_id"] for status, _, body in answers if status == 503
    ] == [f"gen-{i}" for i in range(1, 7)]
    assert app.metrics.requests.values == {("/invocations", "503"): 6}
    assert not transport.closed_by_server


def test_a_malformed_request_read_whole_gets_400_not_503() -> None:
    for bad in (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\n{}",
        b"POST /invocations HTTP/1.1\r\nHost x\r\nContent-Length: 2\r\n\r\n{}",
    ):
        answers, transport = exchange(SheddingApp(), [bad])
        assert [status for status, _, _ in answers] == [400], bad
        assert transport.closed_by_server


def test_refusals_read_whole_keep_the_connection_until_it_is_quiet_for_the_keep_alive() -> None:
    # the keep-alive timeout counts from the last refusal, as from the last answer
    async def run() -> tuple[bool, bool]:
        protocol, transport = connection(SheddingApp(), timeout_keep_alive=1)
        for _ in range(6):  # 1.25 s of refusals, 0.25 s apart
            protocol.data_received(post(b"{}"))
            await asyncio.sleep(0.25)
        open_while_busy = not transport.closed
        await asyncio.sleep(1.5)
        closed_when_quiet = transport.closed
        protocol.connection_lost(None)
        answers, _ = parse_responses(bytes(transport.out))
        assert [status for status, _, _ in answers] == [503] * 6
        return open_while_busy, closed_when_quiet

    assert asyncio.run(run()) == (True, True)


def test_the_loop_falls_behind_after_a_large_pass_and_catches_up_after_two_small() -> None:
    async def run() -> tuple[list[list[bool]], list[bool]]:
        passes = LoopPasses(most=3, admitted=2)
        loop = asyncio.get_running_loop()
        seen, behind = [], []
        for reads in (2, 4, 5, 2, 3, 1, 2, 3, 4, 3):  # one pass's reads; then the loop turns
            seen.append([passes.read(loop) for _ in range(reads)])
            await asyncio.sleep(0)
            behind.append(passes.behind)
        return seen, behind

    no, yes = False, True
    seen, behind = asyncio.run(run())
    # behind from a pass of more than three reads until two passes in a row of no more than
    # two; refused meanwhile: the reads of a pass past its first two
    assert behind == [no, yes, yes, yes, yes, yes, no, no, yes, yes]
    assert seen == [
        [no, no],
        [no] * 4,
        [no, no, yes, yes, yes],
        [no, no],
        [no, no, yes],
        [no],
        [no, no],
        [no] * 3,
        [no] * 4,
        [no, no, yes],
    ]


def test_a_refusal_read_whole_builds_no_request_for_the_app() -> None:
    async def run() -> Any:
        protocol, transport = connection(SheddingApp())
        protocol.data_received(post(b"{}"))
        scope = protocol.scope  # uvicorn's, made when its parser begins a request
        protocol.connection_lost(None)
        assert parse_responses(bytes(transport.out))[0][0][0] == 503
        return scope

    assert asyncio.run(run()) is None


def test_a_read_inside_a_request_is_that_requests_bytes_not_a_request_of_its_own() -> None:
    # the second read looks like a whole request, but the first left the headers open
    begun = b"POST /invocations HTTP/1.1\r\nX-Amzn-SageMaker-Inference-Id: first\r\nX-A: "
    answers, _ = exchange(SheddingApp(), [begun, post(b"{}")])
    assert [json.loads(body)["error"]["request_id"] for _, _, body in answers] == ["first"]


def test_after_large_passes_the_loop_refuses_past_a_passs_first_reads() -> None:
    async def run() -> list[int]:
        app = SheddingApp()
        app.batcher.full = False  # the batcher's own test admits
        connections = [connection(app) for _ in range(PASS_ADMITTED_READS + 2)]
        passes = connections[0][0].passes
        assert passes is not None
        passes.behind = True  # after a large pass
        assert app.batcher.loop_behind()  # the batcher is told: it scores admitted ones at once
        for protocol, _ in connections:  # one pass: no turn of the loop between the reads
            protocol.data_received(post(b"{}"))
        for _ in range(20):
            await asyncio.sleep(0)
        statuses = []
        for protocol, transport in connections:
            protocol.connection_lost(None)
            statuses += [status for status, _, _ in parse_responses(bytes(transport.out))[0]]
        return statuses

    assert asyncio.run(run()) == [200] * PASS_ADMITTED_READS + [503, 503]


def test_a_client_not_reading_its_answers_gets_the_apps_pace() -> None:
    # while the transport's buffer is over its mark, nothing is refused here: a request goes
    # to uvicorn's parser and the app, whose answer waits for the buffer to drain
    request = post(b"{}")

    async def run(reads: list[bytes]) -> tuple[bool, bytes, list[int]]:
        protocol, transport = connection(SheddingApp())
        protocol.pause_writing()
        for data in reads:
            protocol.data_received(data)
        parsed = protocol.scope is not None  # uvicorn's, made when its parser begins one
        for _ in range(20):
            await asyncio.sleep(0)
        written_while_paused = bytes(transport.out)
        protocol.resume_writing()
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        answers = parse_responses(bytes(transport.out))[0]
        return parsed, written_while_paused, [status for status, _, _ in answers]

    assert asyncio.run(run([request])) == (True, b"", [503])  # whole
    assert asyncio.run(run([request[:20], request[20:]])) == (True, b"", [503])  # in parts


def test_a_refusal_is_logged_with_its_target_as_uvicorn_logs_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = post(b"{}", target=b"/invocations?from=terminal-7")

    async def run() -> list[int]:
        protocol, transport = connection(SheddingApp(), access_log=True)
        protocol.data_received(request)  # whole: read by the probe
        protocol.data_received(request[:20])  # in two reads: uvicorn's parser
        protocol.data_received(request[20:])
        protocol.connection_lost(None)
        return [status for status, _, _ in parse_responses(bytes(transport.out))[0]]

    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        assert asyncio.run(run()) == [503, 503]
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert [line.split(" - ", 1)[1] for line in lines] == [
        '"POST /invocations?from=terminal-7 HTTP/1.1" 503'
    ] * 2
