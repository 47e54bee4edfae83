"""Admission at the HTTP protocol: under overload, ``POST /invocations`` gets its 503 before
uvicorn builds a request for the app.

Why: refused through uvicorn's per-request path (scope, ``RequestResponseCycle``, an asyncio
task, the ASGI call, the error body), a request cost 55-59 % of a scored one, so one core
could refuse at most ~1.8x its capacity and a bigger spike waited in socket buffers, where
no deadline sees it (benchmarks/RESULTS.md, "Faults"). Refused here, it costs the parsing
and one write.

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
wait its turn; the app sheds it), and draining (the app answers with ``Connection: close``).

Keep-alive and pipelining hold: the answer is written before the parser reads on past the
refused body, so answers keep the requests' order; HTTP/1.0 or ``Connection: close`` closes
the connection after it, as uvicorn does.

uvicorn internals this relies on (uvicorn 0.54, ``protocols/http/httptools_impl.py``;
tests/test_admission.py drives them byte by byte): the parser callbacks
``on_headers_complete``, ``on_body`` and ``on_message_complete`` (overridden, each calling
uvicorn's own for requests it does not refuse); the per-request attributes ``url``,
``headers`` (names lower-cased), ``parser``, ``expect_100_continue``, ``scope`` (built by
``on_message_begin``) and ``cycle`` (the last request handed to the app, with
``response_complete``); ``on_response_complete`` (re-arms the keep-alive timer, counts the
request, starts a queued pipelined one); ``server_state.default_headers``; ``STATUS_LINE``.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_client_addr

from serving.server import find_app

ROUTE = b"/invocations"
SHED = ("/invocations", "503")  # the app's label values for a shed request


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
        if self.gate is not None:
            message = self.gate.shed_message()
            # the app's error body around the request id (json.dumps, as the app writes it)
            self.body_head = b'{"error": {"code": "overloaded", "message": %s, "request_id": ' % (
                json.dumps(message).encode()
            )

    def on_headers_complete(self) -> None:
        gate = self.gate
        # the batcher's own test first: it fails for nearly every request, and costs least
        if gate is None or not gate.batcher.full or not _is_route(self.url) or not self._refuses():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        answer = self.refusal
        if answer is None:
            super().on_message_complete()
            return
        self.refusal = None
        self.transport.write(answer)
        if not self.refusal_keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _refuses(self) -> bool:
        """Decide for a request to ``/invocations`` whose headers just arrived; when refused,
        hold its answer until its body has been skipped."""
        if (self.cycle is not None and not self.cycle.response_complete) or (
            self.expect_100_continue
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
        if body_bytes < 0 or not self.gate.sheds(body_bytes):
            return False
        version = parser.get_http_version()
        keep_alive = version != "1.0" and parser.should_keep_alive()
        self.refusal_keep_alive = keep_alive
        self.refusal = self._answer(request_id, keep_alive)
        self.gate.metrics.requests.inc(SHED)
        if self.access_log:
            self.access_logger.info(
                '%s - "POST %s HTTP/%s" 503',
                get_client_addr(self.scope),
                self.url.decode("latin-1"),
                version,
            )
        return True

    def _answer(self, sent_id: bytes, keep_alive: bool) -> bytes:
        """The app's 503 Overloaded answer, as bytes on the wire."""
        assert self.gate is not None
        if sent_id:  # as the app reads it: latin-1 in, JSON string in the body, UTF-8 header
            text = sent_id.decode("latin-1")
            request_id, quoted = text.encode(), json.dumps(text).encode()
        else:
            request_id = self.gate.next_id().encode()
            quoted = b'"%s"' % request_id
        body = b"%s%s}}" % (self.body_head, quoted)
        head = [STATUS_LINE[503]]
        for name, value in self.server_state.default_headers:
            head += (name, b": ", value, b"\r\n")
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\n"
            % (len(body), request_id)
        )
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        return b"".join(head)


def _is_route(url: bytes) -> bool:
    """``url`` (the request target as sent) names /invocations, with or without a query."""
    return url[:12] == ROUTE and (len(url) == 12 or url[12] == 0x3F)  # "?"
