"""Admission at the HTTP protocol: under overload, ``POST /invocations`` gets its 503 before
uvicorn builds a request for the app.

Why: refused through uvicorn's per-request path (scope, ``RequestResponseCycle``, an asyncio
task, the ASGI call, the error body), a request cost 55-59 % of a scored one, so one core
could refuse at most ~1.8x its capacity and a bigger spike waited in socket buffers, where
no deadline sees it (benchmarks/RESULTS.md, "Faults"). Refused here, it costs the parsing
and one write.

Two ways in. Most refused requests arrive whole in one read, on a connection with nothing in
progress: :meth:`AdmissionProtocol.data_received` reads such a read with a parser of its own
(:class:`_Probe`: llhttp's checks, a few callbacks, no scope, headers list or cycle), and
when it holds exactly one request the app sheds, answers it there and leaves the keep-alive
timer running (its handler counts quiet from the last refusal): 6 us of Python a refusal
against 12 us through the parser callbacks below, and ~53 against ~65 us of the server's core
under a 10,000-connection flood (benchmarks/RESULTS.md, "Faults"). Any other read (part of a
request, several, a parse error, one the app takes) goes to the connection's parser as if
nothing had looked; that parser never saw the refused bytes, so it is still between requests.

What the batcher cannot see: requests waiting in socket buffers for the loop to read them.
:class:`LoopPasses` counts the reads each pass of the loop makes; from a pass of more than
``PASS_MOST_READS`` until two passes of no more than ``PASS_ADMITTED_READS``, the app's
test is asked with ``loop_behind`` for the reads of a pass past its first
``PASS_ADMITTED_READS`` (it sheds them then whatever the batcher's state), so a flood is
refused as it is read instead of being admitted in bursts whose work makes the next passes
longer still; and the batcher, told the loop is behind, scores what it admits at once
instead of waiting for company, since every turn of a loop reading hundreds of
connections a pass costs tens of ms (benchmarks/RESULTS.md, "Faults").

:class:`AdmissionProtocol` is uvicorn's httptools protocol with one decision added when a
request's headers are complete. It refuses when the request is ``POST /invocations`` with a
``Content-Length``, every earlier request on the connection is answered, and the app sheds
such a request now (``FraudApp.sheds``: the test the app's own shedding makes). It then
skips the body as the parser delivers it and, once the request is complete, writes the 503
the app would (``{"error": {"code": "overloaded", "message", "request_id"}}``, JSON,
``x-request-id``: the ``X-Amzn-SageMaker-Inference-Id`` sent, else a generated id; uvicorn's
``date`` and ``server`` headers) and counts it where the app counts its own:
``fraud_requests{route="/invocations",status="503"}``. Everything else goes to the app as
before: every other route (``/ping`` answers throughout), chunked bodies, ``Expect:
100-continue``, upgrades, a request pipelined behind one still in progress (its answer must
wait its turn; the app sheds it), a client not reading its answers (the transport's buffer
over its mark: uvicorn holds the app's answer until it drains, where a refusal written here
would grow the buffer by each request the client sends), and draining (the app answers with
``Connection: close``).

Keep-alive and pipelining hold: the answer is written before the parser reads on past the
refused body, so answers keep the requests' order; HTTP/1.0 or ``Connection: close`` closes
the connection after it, as uvicorn does.

uvicorn internals this relies on (uvicorn 0.54, ``protocols/http/httptools_impl.py``;
tests/test_admission.py drives them byte by byte): ``data_received`` and the parser
callbacks ``on_message_begin``, ``on_headers_complete``, ``on_body`` and
``on_message_complete`` (overridden, each calling uvicorn's own for requests it does not
refuse); ``pipeline``, ``timeout_keep_alive``, ``timeout_keep_alive_task`` and
``timeout_keep_alive_handler`` (overridden: re-armed while refusals came within the
timeout); ``server_state.total_requests``; the per-request attributes ``url``,
``headers`` (names lower-cased), ``parser``, ``expect_100_continue``, ``scope`` (built by
``on_message_begin``) and ``cycle`` (the last request handed to the app, with
``response_complete``); ``on_response_complete`` (re-arms the keep-alive timer, counts the
request, starts a queued pipelined one); ``server_state.default_headers``; ``STATUS_LINE``.
"""

from __future__ import annotations

import json
import math
import weakref
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.server import find_app

ROUTE = b"/invocations"
SHED = ("/invocations", "503")
PASS_MOST_READS = 128  # reads in one pass of the loop before it counts as behind
PASS_ADMITTED_READS = 16  # reads of a pass the app still judges while the loop is behind
_PARSER_FAILED = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class AdmissionProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing ``POST /invocations`` while the app sheds.
    Pass the class as ``uvicorn.Config(http=AdmissionProtocol)``; with an app that has no
    ``sheds`` it behaves exactly as its parent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = find_app(self.app)
        self.gate = app if hasattr(app, "sheds") else None
        self.refusal: bytes | None = None  # the answer to the request whose body is skipped
        self.refusal_keep_alive = True
        self.in_message = False  # the parser has begun a request it has not finished
        self.probe: _Probe | None = None  # reads whole requests while the app sheds
        self.refused_at = -math.inf  # loop time of the last request refused whole
        self.passes: LoopPasses | None = None
        self.loop_behind = False  # this read is past the loop's budget for a pass
        if self.gate is not None:
            self.passes, self.body_head = _shared(self.gate)

    def data_received(self, data: bytes) -> None:
        passes = self.passes
        if passes is None:
            super().data_received(data)
            return
        self.loop_behind = passes.read(self.loop)
        if (
            data[:17] != b"POST /invocations"
            or self.in_message
            or self.flow.write_paused  # a client not reading its answers: the parser's pace
            or not self._shedding()
            or not self._refuses_whole(data)
        ):
            super().data_received(data)

    def on_message_begin(self) -> None:
        self.in_message = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if (
            self.gate is None
            or not self._shedding()
            or not _is_route(self.url)
            or not self._refuses()
        ):
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        answer = self.refusal
        if answer is None:
            super().on_message_complete()
            return
        self.refusal = None
        self.transport.write(answer)
        if not self.refusal_keep_alive:
            self.transport.close()
        self.on_response_complete()

    def timeout_keep_alive_handler(self) -> None:
        # requests refused whole leave the keep-alive timer running: idle counts from the last
        quiet = self.loop.time() - self.refused_at
        if quiet < self.timeout_keep_alive and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - quiet, self.timeout_keep_alive_handler
            )
            return
        super().timeout_keep_alive_handler()

    def _shedding(self) -> bool:
        """The cheap half of the app's test: the loop behind, or the batcher full or behind
        (the test the app's ``sheds`` completes for one request)."""
        return self.loop_behind or self.gate.batcher.full  # type: ignore[union-attr]

    def _refuses_whole(self, data: bytes) -> bool:
        """Refuse ``data`` when it is exactly one whole request the app sheds and nothing is
        in progress on the connection: read by a parser of its own (the connection's parser
        never sees it, and stays between requests), answered, and no more work. Anything
        else (part of a request, more than one, a parse error, a request the app would not
        shed) is left to the connection's parser as if this had not looked."""
        if self.pipeline or not (self.cycle is None or self.cycle.response_complete):
            return False
        probe = self.probe
        if probe is None:
            probe = self.probe = _Probe()
        probe.reset()
        try:
            probe.parser.feed_data(data)
        except _PARSER_FAILED:
            self.probe = None  # its state is unknown: a fresh one next time
            return False
        if probe.begun != probe.ended:
            self.probe = None  # stopped inside a request
            return False
        assert self.gate is not None
        if (
            probe.ended != 1
            or not probe.plain
            or probe.body_bytes < 0
            or not _is_route(probe.url)
            or not self.gate.sheds(probe.body_bytes, self.loop_behind)
        ):
            return False
        keep_alive = probe.keep_alive
        answer = self._refusal(probe.url, probe.request_id, probe.version, keep_alive)
        self.transport.write(answer)
        self.server_state.total_requests += 1
        if not keep_alive:
            self.probe = None  # a parser ignores what follows a last request
            self.transport.close()
            return True
        self.refused_at = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        return True

    def _refuses(self) -> bool:
        """Decide for a request to ``/invocations`` whose headers just arrived; when refused,
        hold its answer until its body has been skipped."""
        if (
            (self.cycle is not None and not self.cycle.response_complete)
            or self.expect_100_continue
            or self.flow.write_paused
        ):
            return False
        parser = self.parser
        if parser.get_method() != b"POST" or parser.should_upgrade():
            return False
        body_bytes = -1
        request_id = b""
        for name, value in self.headers:
            if name == b"content-length":
                body_bytes = int(value)  # digits only: the parser refuses anything else
            elif name == b"transfer-encoding":
                return False
            elif name == b"x-amzn-sagemaker-inference-id":
                request_id = value
        assert self.gate is not None
        if body_bytes < 0 or not self.gate.sheds(body_bytes, self.loop_behind):
            return False
        version = parser.get_http_version()
        keep_alive = version != "1.0" and parser.should_keep_alive()
        self.refusal_keep_alive = keep_alive
        self.refusal = self._refusal(self.url, request_id, version, keep_alive)
        return True

    def _refusal(self, url: bytes, sent_id: bytes, version: str, keep_alive: bool) -> bytes:
        """The app's 503 Overloaded answer to ``url`` (the request target as sent) as bytes on
        the wire, counted and logged as the app's own."""
        gate = self.gate
        assert gate is not None
        gate.metrics.requests.inc(SHED)
        if self.access_log:
            client = f"{self.client[0]}:{self.client[1]}" if self.client else ""
            target = url.decode("latin-1")  # uvicorn's line: the path and its query
            self.access_logger.info('%s - "POST %s HTTP/%s" 503', client, target, version)
        if sent_id:  # as the app reads it: latin-1 in, JSON string in the body, UTF-8 header
            text = sent_id.decode("latin-1")
            request_id, quoted = text.encode(), json.dumps(text).encode()
        else:
            request_id = gate.next_id().encode()
            quoted = b'"%s"' % request_id
        body = b"%s%s}}" % (self.body_head, quoted)
        return b"%scontent-length: %d\r\nx-request-id: %s\r\n%s\r\n%s" % (
            _head(self.server_state.default_headers),
            len(body),
            request_id,
            b"" if keep_alive else b"connection: close\r\n",
            body,
        )


class _Probe:
    """Parser callbacks for a request read whole: what admission needs of it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn's
        self.keep_alive = True
        self.version = "1.1"
        self.reset()

    def reset(self) -> None:
        """Before a read: nothing seen yet."""
        self.begun = self.ended = 0
        self.url = self.request_id = b""
        self.body_bytes = -1
        self.plain = True  # no transfer coding, Expect or upgrade

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.body_bytes = int(value)  # digits only: the parser refuses anything else
        elif name == b"x-amzn-sagemaker-inference-id":
            self.request_id = value
        elif name == b"transfer-encoding" or name == b"expect":
            self.plain = False

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.get_method() != b"POST" or parser.should_upgrade():
            self.plain = False
        self.version = version = parser.get_http_version()
        self.keep_alive = version != "1.0" and parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.ended += 1


class LoopPasses:
    """How far behind the event loop reads: how many reads each of its passes makes.

    A request waits in its socket's buffer until the loop's pass over ready connections
    reaches it, and one pass reads up to 1,024 of them (libuv's batch) before any task runs.
    Under a flood of requests to refuse, each costing ~50 us, passes read hundreds and last
    tens of ms, a wait the batcher never sees. ``read`` is called at each read of a
    connection: the pass's first queues a callback, which runs once the pass's reads are done and
    records how many there were.

    The loop falls behind after a pass that read more than ``most`` times. While behind, the
    first ``admitted`` reads of a pass are still left to the batcher's own test and the rest
    are refused. Those admitted keep the app working, and their clients stop sending while
    they wait: many clients of a closed loop, answered fast when refused and sending again at
    once, would otherwise keep every pass large and be refused for ever with nothing to
    score. The loop catches up after two passes in a row that read no more than
    ``admitted`` times: the budget refused nothing. Not sooner: refusing is what keeps the
    passes short, and leaving as soon as one read fewer than ``most`` admitted a whole pass
    at once, whose work made the next passes long again (503s waited tens of ms, requests
    admitted in such bursts over 100 ms: benchmarks/RESULTS.md, "Faults"). Counted, not
    timed: a pass's time also holds whatever ran instead of this process (another worker on
    the core, the hypervisor). The one large pass after a host stall costs little: the passes
    after it are small, and two of them end it."""

    def __init__(self, most: int, admitted: int) -> None:
        self.most = most
        self.admitted = admitted
        self.reads = 0  # this pass's, so far; 0 between passes
        self.last = self.before_last = 0  # the last two passes'
        self.behind = False

    def read(self, loop: Any) -> bool:
        """Count a read; whether it is past the pass's budget while the loop is behind."""
        reads = self.reads
        if not reads:
            loop.call_soon(self._ended)
        self.reads = reads = reads + 1
        return self.behind and reads > self.admitted

    def _ended(self) -> None:
        self.before_last, self.last = self.last, self.reads
        self.reads = 0
        if self.behind:
            self.behind = max(self.last, self.before_last) > self.admitted
        else:
            self.behind = self.last > self.most


_of_app: weakref.WeakKeyDictionary[Any, tuple[LoopPasses, bytes]] = weakref.WeakKeyDictionary()


def _shared(gate: Any) -> tuple[LoopPasses, bytes]:
    """What an app's connections share, made at its first: the one measure of its loop (an
    app serves on one loop) and its error body up to the request id (``json.dumps`` of its
    fixed shed message, as the app writes it)."""
    shared = _of_app.get(gate)
    if shared is None:
        body_head = b'{"error": {"code": "overloaded", "message": %s, "request_id": ' % (
            json.dumps(gate.shed_message()).encode()
        )
        passes = LoopPasses(PASS_MOST_READS, PASS_ADMITTED_READS)
        gate.batcher.loop_behind = lambda: passes.behind
        shared = _of_app[gate] = (passes, body_head)
    return shared


_heads: tuple[object, bytes] = (None, b"")


def _head(default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 503's status line and headers up to its content length, made once per value of
    uvicorn's default headers (a new list each second, for its ``date``)."""
    global _heads
    made_for, head = _heads
    if made_for is not default_headers:
        lines = [STATUS_LINE[503]]
        for name, value in default_headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"content-type: application/json\r\n")
        head = b"".join(lines)
        _heads = (default_headers, head)
    return head


def _is_route(url: bytes) -> bool:
    """``url`` (the request target as sent) names /invocations, with or without a query."""
    return url[:12] == ROUTE and (len(url) == 12 or url[12] == 0x3F)  # "?"
