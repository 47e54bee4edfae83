"""The ASGI application: SageMaker's routes on a plain ASGI callable (no framework on the hot
path; FastAPI's routing and validation cost more than our model at these speeds).

Routes: ``GET /ping`` (200, empty, once the package is verified, loaded, backends picked
and warmed; 503 before), ``POST /invocations``, ``GET /execution-parameters`` (batch
transform), ``GET /metrics`` (Prometheus). One place (:meth:`FraudApp._error`) turns errors
into short JSON bodies with the request id; unknown exceptions become 500 with the
traceback in the log, never in the response.

The model loads in a thread after start-up so the socket accepts connections at once and
``/ping`` can say "not ready" meanwhile (SageMaker wants connections within 250 ms).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import numpy as np

from core.cpus import cpu_count
from core.feature_names import FEATURE_NAMES
from serving import codecs, lanes, logs, openapi, transaction_requests, validation
from serving.batch_limits import batcher_limit
from serving.batcher import BatchStats, MicroBatcher, scores_within
from serving.capture import DataCapture
from serving.errors import (
    BadRequest,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ServingError,
    TransactionsUnavailable,
)
from serving.feature_store.factory import open_store
from serving.identifiers import IdentifierHasher
from serving.lanes import BulkLane
from serving.metrics import ServerMetrics, emf_line
from serving.scorer import Scorer
from serving.settings import MB, Settings
from serving.transactions import TransactionPath

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

T = TypeVar("T")
log = logging.getLogger("fraud.serving")
decision_log = logging.getLogger("fraud.decisions")
JSON = b"application/json"
ROUTES = {  # path -> its one method
    "/ping": "GET",
    "/invocations": "POST",
    "/execution-parameters": "GET",
    "/metrics": "GET",
    "/openapi.json": "GET",
}


class FraudApp:
    def __init__(self, settings: Settings, scorer: Scorer | None = None) -> None:
        self.settings = settings
        cpus = settings.workers
        threads = [1] if cpus > 1 else [1, cpu_count()]
        self.scorer = scorer or Scorer(settings.model_dir, thread_options=sorted(set(threads)))
        self.metrics = ServerMetrics(list(FEATURE_NAMES))
        m = self.metrics
        self.batcher = MicroBatcher(
            self._score,
            max_batch_rows=settings.max_batch_size,
            max_delay_us=settings.max_delay_us,
            max_queue_rows=settings.max_queue_rows,
            deadline_s=settings.deadline_ms / 1e3,
            inline_max_rows=settings.inline_max_rows,
            shed_wait_s=settings.shed_wait_ms / 1e3,
            stats=BatchStats(
                on_batch=lambda rows, _: m.batch_rows.observe(rows),
                on_wait=m.queue_wait.observe,
                on_compute=m.compute.observe,
            ),
        )
        self.bulk = BulkLane(
            settings.bulk_concurrency, settings.bulk_max_waiting, settings.deadline_ms / 1e3
        )
        self._bulk_thread = ThreadPoolExecutor(1, thread_name_prefix="bulk")
        self.hasher = IdentifierHasher(settings.identifier_fields, settings.hmac_secret)
        self.capture: DataCapture | None = None
        if settings.capture_dir is not None and settings.capture_percent > 0:
            self.capture = DataCapture(
                settings.capture_dir,
                settings.endpoint_name,
                settings.variant_name,
                settings.capture_percent,
                self.hasher,
            )
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self._requests = 0
        self._id_prefix = uuid.uuid4().hex[:12]
        self.checker: validation.Checker | None = None  # built once the package is loaded
        self.transactions: TransactionPath | None = None  # opened with the package
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_request = time.monotonic()
        self.load_error: str | None = None
        self._load_task: asyncio.Future[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._log_handler: logs.BatchingHandler | None = None
        # the contract before the package loads (features by name); rebuilt from the package
        self._openapi = openapi.render(openapi.document(list(FEATURE_NAMES), ""))

    # -- life cycle ------------------------------------------------------------------------

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.scorer.load()
            s = self.scorer
            self.batcher.max_batch_rows = batcher_limit(
                s.selection,
                s.timings,
                self.settings.max_batch_size,
                self.settings.score_p99_budget_us,
            )
            self.checker = validation.Checker(s.feature_names, s.mins, s.maxs)
            self._openapi = openapi.render(openapi.document(s.feature_names, s.model_version))
            self.metrics.set_model(s.model_version, s.thresholds_version)
            self._open_store()
        except Exception as exc:  # a bad package keeps /ping at 503, with the reason
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "model package refused",
                exc_info=True,
                extra={"fields": {"model_dir": str(self.settings.model_dir)}},
            )
            return
        # everything loading created (modules, runtimes, buffers) lives as long as the process:
        # drop loading's garbage, then move the rest out of the collector's generations so
        # full collections stop walking it
        gc.collect()
        gc.freeze()
        self.ready = True
        load_s = round(time.perf_counter() - started, 3)
        log.info("ready", extra={"fields": {"pid": os.getpid(), "load_s": load_s}})

    def _open_store(self) -> None:
        store = open_store(self.settings)
        if store is not None:
            path = TransactionPath(
                store,
                self.settings.allow_numeric_ids,
                self.settings.policies(),
                self.metrics,
                self.settings.max_clock_ahead_s,
                self.settings.backlog_dir,
            )
            self.transactions = path
            if self._loop is not None:  # its snapshot timer runs on the loop
                self._loop.call_soon_threadsafe(path.start)

    async def startup(self) -> None:
        lanes.set_switch_interval()
        self.batcher.start()
        if self.capture is not None:
            self.capture.start()
        loop = self._loop = asyncio.get_running_loop()
        self._log_handler = logs.batching_handler()  # the per-decision fast path, if ours
        self._load_task = loop.run_in_executor(None, self._load)
        self._flush_timer = loop.call_later(logs.FLUSH_INTERVAL_S, self._flush_logs)
        if self.settings.serve_when_ready:  # uvicorn accepts once this returns
            await self._load_task

    def _flush_logs(self) -> None:
        """Write out the batched log lines, then again in FLUSH_INTERVAL_S (serving.logs)."""
        logs.flush()
        loop = asyncio.get_running_loop()
        self._flush_timer = loop.call_later(logs.FLUSH_INTERVAL_S, self._flush_logs)

    async def shutdown(self) -> None:
        try:
            await self.batcher.close()
            self._bulk_thread.shutdown(wait=True)
            if self.capture is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.capture.close)
            if self.transactions is not None:
                await self.transactions.close()
            written = getattr(self.capture, "written", 0)
            log.info("shut down", extra={"fields": {"captured": written}})
        finally:  # worker processes end with os._exit: this flush is the only sure one
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            logs.flush()

    def next_id(self) -> str:
        """A request id unique per process and request, far cheaper than uuid4."""
        self._requests += 1
        return f"{self._id_prefix}-{self._requests:x}"

    def begin_drain(self) -> None:
        """Shutdown began: answer new requests 503 with ``Connection: close``."""
        self.draining = True
        log.info("draining")

    def sheds(self, body_bytes: int, loop_behind: bool = False) -> bool:
        """Whether a POST /invocations with a ``body_bytes`` body gets 503 Overloaded now,
        before decoding: the model is ready, the server is not draining (that answers 503
        with ``Connection: close`` itself), the body fits the real-time lane, and the
        batcher is full or behind (its oldest request waited past FRAUD_SHED_WAIT_MS) or
        ``loop_behind`` (``serving.admission``'s measure of the event loop's passes).
        The one test behind both the app's shedding and ``serving.admission``'s, which asks
        before uvicorn builds the request (and so also refuses a small body holding more
        than FRAUD_REALTIME_MAX_ROWS transactions, which the app would send to the bulk
        lane: it cannot count them unread)."""
        return (
            (loop_behind or self.batcher.full)
            and body_bytes <= self.settings.bulk_body_bytes
            and self.ready
            and not self.draining
        )

    def shed_message(self) -> str:
        """The message of a 503 for a request :meth:`sheds` refuses (fixed text: the HTTP
        protocol's refusals, ``serving.admission``, answer it prebuilt)."""
        return (
            "queue full or behind (the oldest queued request waited over "
            f"{self.settings.shed_wait_ms:g} ms, or {self.settings.max_queue_rows} rows wait); "
            "retry shortly"
        )

    def idle_for_s(self) -> float:
        return time.monotonic() - self._last_request

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-amzn-sagemaker-inference-id") or self.next_id()
        path, method = scope["path"], scope["method"]
        self.in_flight += 1
        self._last_request = time.monotonic()
        try:
            if path == "/invocations" and method == "POST":
                await self._invocations(scope, headers, request_id, receive, send)
            elif path == "/ping" and method == "GET":
                await self._ping(request_id, send)
            elif path == "/execution-parameters" and method == "GET":
                await _respond(send, 200, json.dumps(self._execution_parameters()).encode())
            elif path == "/metrics" and method == "GET":
                await _respond(send, 200, self.metrics.render(), self.metrics.content_type.encode())
            elif path == "/openapi.json" and method == "GET":
                await _respond(send, 200, self._openapi)
            elif path in ROUTES:
                allowed = ROUTES[path]
                await self._error(
                    send,
                    request_id,
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed on {path}; use {allowed}",
                    [(b"allow", allowed.encode())],
                )
                return
            else:
                routes = ", ".join(f"{m} {p}" for p, m in ROUTES.items())
                await self._error(
                    send,
                    request_id,
                    404,
                    "not_found",
                    f"no route {method} {path}; routes: {routes}",
                )
                return
        except ServingError as exc:
            await self._error(send, request_id, exc.http_status, exc.code, str(exc))
            self.metrics.requests.inc((path, str(exc.http_status)))
        except Exception:
            log.error(
                "unhandled error", exc_info=True, extra={"fields": {"request_id": request_id}}
            )
            await self._error(
                send,
                request_id,
                500,
                "internal_error",
                "internal error; the request id finds it in the logs",
            )
            self.metrics.requests.inc((path, "500"))
        finally:
            self.in_flight -= 1
            self._last_request = time.monotonic()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ping(self, request_id: str, send: Send) -> None:
        if not self.ready:
            reason = self.load_error or "the model package is still loading"
            raise NotReady(f"not ready: {reason}")
        await _respond(send, 200, b"", b"text/plain")

    def _execution_parameters(self) -> dict[str, object]:
        return {
            "MaxConcurrentTransforms": self.settings.max_concurrent_transforms,
            "BatchStrategy": self.settings.batch_strategy,
            "MaxPayloadInMB": max(1, self.settings.max_payload_bytes // MB),
        }

    # -- /invocations ----------------------------------------------------------------------

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.settings.max_payload_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return self.scorer.score(x)

    async def _invocations(
        self, scope: Scope, headers: dict[str, str], request_id: str, receive: Receive, send: Send
    ) -> None:
        """Route one request to its lane (serving.lanes): bulk requests hold a bulk slot
        from decoding to their answer; real-time ones never wait for one."""
        started = time.perf_counter()
        if self.draining:
            raise Overloaded("shutting down; retry on another instance")
        checker = self.checker
        if not self.ready or checker is None:
            raise NotReady(f"not ready: {self.load_error or 'the model package is still loading'}")
        body = await self._read_body(headers, receive)
        call = _Call(scope, headers, request_id, body, send, started)
        big = len(body) > self.settings.bulk_body_bytes
        doc = transaction_requests.sniff(body, headers.get("content-type"))
        if doc is not None:
            items = doc.get("transactions") or doc.get("labels")
            count = len(items) if isinstance(items, list) else 0
            if big or count > self.settings.realtime_max_rows:
                async with self.bulk:
                    await self._transactions(doc, call, bulk=True)
            else:
                await self._transactions(doc, call, bulk=False)
            return
        if big:  # the lane first: its bound sheds before any decoding work
            async with self.bulk:
                decoded = await self._off_loop(self._decode, call)
                await self._features(decoded, call, checker, bulk=True)
            return
        if self.sheds(len(body)):
            # shed before decoding: under overload the decode of requests that the full queue
            # would refuse anyway starved the loop, and queued requests overstayed their
            # deadline
            raise Overloaded(self.shed_message())
        decoded = self._decode(call)
        if len(decoded.x) > self.settings.realtime_max_rows:
            async with self.bulk:
                await self._features(decoded, call, checker, bulk=True)
        else:
            await self._features(decoded, call, checker, bulk=False)

    async def _off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Bulk work (decoding, recording) on the bulk lane's thread, so the loop keeps
        answering real-time requests meanwhile (serving.lanes: the GIL switch interval)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._bulk_thread, work, *args)

    def _decode(self, call: _Call) -> codecs.Decoded:
        content_type = call.headers.get("content-type")
        return codecs.decode(call.body, content_type, self.scorer.feature_names)

    async def _features(
        self, decoded: codecs.Decoded, call: _Call, checker: validation.Checker, bulk: bool
    ) -> None:
        """Feature vectors: score, answer, record."""
        headers = call.headers
        accept = codecs.negotiate(headers.get("accept"), self.settings.default_accept)
        flagged, per_feature = checker.check(decoded.x)
        if any(per_feature):
            self.metrics.count_out_of_range(per_feature)
        scores = await self._scores(decoded.x, call.scope, bulk)
        decisions = self.scorer.decisions(scores)
        predictions: list[dict[str, object]] = []
        for i, (score, decision) in enumerate(zip(scores.tolist(), decisions, strict=True)):
            p: dict[str, object] = {
                "score": score,
                "decision": decision,
                "out_of_range": bool(flagged[i]),
            }
            if decoded.extras is not None:
                p.update({k: v for k, v in decoded.extras[i].items() if k not in p})
            predictions.append(p)
            self.metrics.decisions.inc((decision,))
        out = codecs.encode(predictions, accept, self.scorer.versions)
        extra_headers = self._headers(call.request_id)
        attributes = headers.get("x-amzn-sagemaker-custom-attributes")
        if attributes is not None:
            extra_headers.append((b"x-amzn-sagemaker-custom-attributes", attributes.encode()))
        content_type = headers.get("content-type")
        if bulk:
            await self._off_loop(
                self._record, call, content_type, out, accept, predictions, decoded.x
            )
        else:
            self._record(call, content_type, out, accept, predictions, decoded.x)
        await _respond(call.send, 200, out, accept.encode(), extra_headers)
        self._answered(call)

    def _answered(self, call: _Call) -> None:
        self.metrics.latency.observe(time.perf_counter() - call.started)
        self.metrics.requests.inc(("/invocations", "200"))

    async def _scores(self, x: np.ndarray, scope: Scope, bulk: bool = False) -> np.ndarray:
        if bulk:
            return await self._bulk_scores(x)
        self.metrics.queue_rows = self.batcher.queued_rows + len(x)
        scores = self.batcher.admit(x, client=scope.get("client"))
        if scores is None:  # it waits in the queue for a batch
            queued = self.batcher.enqueue(x)  # joins the queue now, not in a later task
            scores = await self._wait(queued)
        return scores

    async def _bulk_scores(self, x: np.ndarray) -> np.ndarray:
        """Bulk rows in batches of at most the batch limit, each queued behind any real-time
        rows: a real-time request waits for one such batch at most."""
        step = max(1, self.batcher.max_batch_rows)
        parts = []
        for i in range(0, len(x), step):
            parts.append(await self._wait(self.batcher.enqueue(x[i : i + step], bulk=True)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _wait(self, queued: asyncio.Future[np.ndarray]) -> np.ndarray:
        return await scores_within(
            queued, self.settings.timeout_s, "SAGEMAKER_MODEL_SERVER_TIMEOUT"
        )

    async def _transactions(self, doc: dict[str, Any], call: _Call, bulk: bool) -> None:
        """Raw transactions or labels (serving.transactions)."""
        path = self.transactions
        if path is None:
            raise TransactionsUnavailable(
                "the embedded feature store serves one worker process; set "
                "FRAUD_FEATURE_STORE=redis://... or SAGEMAKER_MODEL_SERVER_WORKERS=1"
            )
        if not bulk and self.sheds(len(call.body)):
            raise Overloaded(self.shed_message())
        s = self.scorer
        versions = s.versions
        answer = await path.handle(
            doc, lambda x: self._scores(x, call.scope, bulk), s.decisions, versions
        )
        if answer.predictions:  # transactions (labels have no decision record)
            if answer.rows is not None:  # not decided by the fallback policy
                for p in answer.predictions:
                    self.metrics.decisions.inc((str(p["decision"]),))

            def captured() -> bytes:  # the capture keeps the features, whatever was answered
                if answer.rows is None:
                    return answer.body
                return codecs.encode(answer.records(), codecs.JSON, versions)

            record = (
                call,
                "application/json",
                captured,
                codecs.JSON,
                answer.predictions,
                answer.rows,
            )
            if bulk:
                await self._off_loop(self._record, *record)
            else:
                self._record(*record)
        await _respond(call.send, 200, answer.body, JSON, self._headers(call.request_id))
        self._answered(call)

    def _record(
        self,
        call: _Call,
        content_type: str | None,
        out: bytes | Callable[[], bytes],
        accept: str,
        predictions: list[dict[str, object]],
        rows: np.ndarray | list[list[float]] | None = None,
    ) -> None:
        """Audit log (one record per decision), capture and EMF, written to the kernel (file
        or pipe) before the response is sent: a worker killed right after answering loses no
        answered decision. Each decision record holds the features it was scored on (``fraud
        replay`` re-scores it): ``rows``, feature vectors' or the features the transaction
        path computed. ``out`` is the captured response, or what makes it when a capture
        is taken. A fault here is logged; the caller still gets its answer."""
        try:
            if decision_log.isEnabledFor(logging.INFO):
                fast = self._log_handler
                names = self.scorer.feature_names
                versions = self.scorer.versions
                for i, p in enumerate(predictions):
                    fields = {"request_id": call.request_id, **versions, **self.hasher.redact(p)}
                    if rows is not None:
                        row = rows[i]
                        values = row.tolist() if isinstance(row, np.ndarray) else row
                        fields["features"] = dict(zip(names, values, strict=True))
                    if fast is not None:
                        fast.append_info(decision_log.name, "decision", fields)
                    else:
                        decision_log.info("decision", extra={"fields": fields})
                if fast is not None:
                    fast.flush()
            if self.capture is not None and self.capture.should_capture():
                self.capture.write(
                    call.body,
                    content_type or "application/json",
                    out if isinstance(out, bytes) else out(),
                    accept,
                    call.headers.get("x-amzn-sagemaker-inference-id"),
                )
            if self.settings.emit_emf:
                elapsed_s = time.perf_counter() - call.started
                print(
                    emf_line(
                        "FraudInference",
                        {"ModelVersion": self.scorer.model_version},
                        {"latency_ms": elapsed_s * 1e3, "rows": len(predictions)},
                    ),
                    flush=False,
                )
        except Exception:
            log.error(
                "recording failed", exc_info=True, extra={"fields": {"request_id": call.request_id}}
            )

    async def _error(
        self,
        send: Send,
        request_id: str,
        status: int,
        code: str,
        message: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(
            {"error": {"code": code, "message": message[:1000], "request_id": request_id}}
        ).encode()
        headers = self._headers(request_id) + (extra_headers or [])
        await _respond(send, status, body, JSON, headers)

    def _headers(self, request_id: str) -> list[tuple[bytes, bytes]]:
        out = [(b"x-request-id", request_id.encode())]
        if self.draining:  # uvicorn closes the connection after this response
            out.append((b"connection", b"close"))
        return out


class _Call(NamedTuple):
    """One request on /invocations, as its handlers pass it along."""

    scope: Scope
    headers: dict[str, str]
    request_id: str
    body: bytes
    send: Send
    started: float  # time.perf_counter() at arrival


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
