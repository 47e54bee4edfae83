"""Dynamic micro-batching on the event loop: concurrent requests share one backend call.

A collector task takes the queued requests, waits for more (bounded by ``max_delay_us`` and
``max_batch_rows``), scores them in one call and hands each request exactly its own rows
back, in order. How long it waits depends on how many clients are active: the app names the
connection of each request, and while fewer requests are queued than connections were active
in the last ``ACTIVE_WINDOW_S`` and the arrival rate predicts one within the remaining
delay, the collector waits for the others up to the max delay. A request with no company
expected (a lone client, or arrivals further apart than the max delay) is scored at once.

Small batches are scored inline on the event loop: handing one to a thread costs more than
scoring it (measured on the 2-core build machine with uvloop and ONNX Runtime on one thread:
a ``run_in_executor`` round trip adds 95-100 us, while scoring takes 21 us for 1 row and
36 us for 16). Larger batches go to one worker thread so the loop keeps reading requests.

Bounded: a request that would push the queue past ``max_queue_rows``, or that arrives while
the oldest queued request has waited longer than ``shed_wait_s``, fails at once with
Overloaded (503): past capacity new requests get a fast 503 instead of joining a queue they
would leave a deadline later (the queue's age, not only its length, says the server is
behind). A request still queued ``deadline_s`` after it arrived fails with
DeadlineExceeded (503) instead of being scored late.

Two queues: real-time requests first, bulk ones (``enqueue(bulk=True)``, admitted by
``serving.lanes``) only when no real-time request waits. A bulk batch never takes real-time
rows along and never waits for company; its rows do not count against ``max_queue_rows``
(the bulk lane bounds them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.errors import DeadlineExceeded, Overloaded

ACTIVE_WINDOW_S = 0.1
MAX_CLIENTS = 1_024  # connections remembered before idle ones are dropped (a bounded scan)


def _never() -> bool:
    return False


@dataclasses.dataclass
class _Pending:
    x: np.ndarray  # (rows, n_features) float32
    future: asyncio.Future[np.ndarray]
    enqueued: float  # time.perf_counter()


@dataclasses.dataclass
class BatchStats:
    """Observer hooks, called on the loop thread after each batch."""

    on_batch: Callable[[int, int], None] = lambda rows, requests: None
    on_wait: Callable[[float], None] = lambda seconds: None
    on_compute: Callable[[float], None] = lambda seconds: None


class MicroBatcher:
    def __init__(
        self,
        score: Callable[[np.ndarray], np.ndarray],
        max_batch_rows: int = 256,
        max_delay_us: int = 500,
        max_queue_rows: int = 8_192,
        deadline_s: float = 1.0,
        inline_max_rows: int = 16,
        stats: BatchStats | None = None,
        shed_wait_s: float = 0.02,
    ) -> None:
        self._score = score
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_us / 1e6
        self.max_queue_rows = max_queue_rows
        self.deadline_s = deadline_s
        self.shed_wait_s = shed_wait_s
        self.inline_max_rows = inline_max_rows
        self.stats = stats or BatchStats()
        self._queue: deque[_Pending] = deque()  # real-time
        self._bulk: deque[_Pending] = deque()
        self._queued_rows = 0  # real-time rows waiting
        self._wakeup: asyncio.Event | None = None
        self._arrival: asyncio.Event | None = None
        self._clients: dict[object, float] = {}  # connection -> last request time
        self._last_arrival: float | None = None
        self._interval_s = 0.0  # moving average of the time between arrivals
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
        self._closing = False
        self._busy = False  # a batch is being collected or scored
        # whether the event loop is behind, its passes long (hundreds of reads each): set by
        # whoever counts them (serving.admission); waiting for company then costs whole passes
        self.loop_behind: Callable[[], bool] = _never

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def full(self) -> bool:
        """No request can join the queue now (callers may refuse before doing any work)."""
        return self._queued_rows >= self.max_queue_rows or self._behind()

    def _behind(self) -> bool:
        queue = self._queue
        return bool(queue) and time.perf_counter() - queue[0].enqueued > self.shed_wait_s

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._arrival = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _active_clients(self, now: float) -> int:
        if len(self._clients) > MAX_CLIENTS:  # forget closed connections
            self._clients = {k: t for k, t in self._clients.items() if now - t < ACTIVE_WINDOW_S}
        return sum(1 for t in self._clients.values() if now - t < ACTIVE_WINDOW_S)

    async def submit(self, x: np.ndarray, client: object = None) -> np.ndarray:
        """Scores for ``x`` (rows,) once its batch ran; raises Overloaded / DeadlineExceeded."""
        scores = self.admit(x, client)
        return scores if scores is not None else await self.enqueue(x)

    def admit(self, x: np.ndarray, client: object = None) -> np.ndarray | None:
        """Accept one request: its scores at once when it may skip the queue, else None and
        the caller awaits what :meth:`enqueue` returns (call it at once: the capacity check
        here counts on the rows joining the queue in the same step). Raises Overloaded when
        shutting down or full.

        Synchronous on purpose: the common lone single-record request then costs no
        coroutine or task at all on its way to the model."""
        if self._closing or self._wakeup is None:
            raise Overloaded("the server is shutting down")
        if self._queued_rows + len(x) > self.max_queue_rows and self._queued_rows > 0:
            raise Overloaded(
                f"queue full ({self._queued_rows} rows waiting, limit {self.max_queue_rows})"
            )
        if self._behind():
            raise Overloaded(
                f"behind: the oldest queued request has waited over "
                f"{self.shed_wait_s * 1e3:.0f} ms; retry shortly"
            )
        now = time.perf_counter()
        if self._last_arrival is not None:
            self._interval_s += 0.1 * (min(now - self._last_arrival, 1.0) - self._interval_s)
        self._last_arrival = now
        if client is None:
            return None
        self._clients[client] = now
        if (
            self._queue
            or self._bulk
            or self._busy
            or len(x) > self.inline_max_rows
            or (
                self._interval_s <= self.max_delay_s
                and not self.loop_behind()
                and self._active_clients(now) > 1
            )
        ):
            return None
        # fast path: a small request with no company expected (one active client, or
        # arrivals further apart than the max delay), or any while the loop is behind, scores
        # at once, without a trip through the collector. Each step of that trip (the
        # collector woken, its wait for company, the caller woken) waits for the loop's next
        # pass: a few us on an idle loop, tens of ms on one reading hundreds of connections
        self._busy = True
        try:
            scores = self._score(x)
        finally:
            self._busy = False
        self.stats.on_wait(0.0)
        self.stats.on_compute(time.perf_counter() - now)
        self.stats.on_batch(len(x), 1)
        return scores

    def enqueue(self, x: np.ndarray, bulk: bool = False) -> asyncio.Future[np.ndarray]:
        """Queue a request that :meth:`admit` did not score, in the same step (no await in
        between, so the next request's capacity check sees these rows); the future resolves
        to its scores once its batch ran. A cancelled future is skipped by the collector.
        ``bulk`` rows wait until no real-time request does."""
        if self._closing:
            raise Overloaded("the server is shutting down")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        item = _Pending(x, future, time.perf_counter())
        if bulk:
            self._bulk.append(item)
        else:
            self._queue.append(item)
            self._queued_rows += len(x)
        assert self._wakeup is not None and self._arrival is not None
        self._wakeup.set()
        self._arrival.set()
        return future

    async def close(self) -> None:
        """Score everything already accepted, then stop."""
        self._closing = True
        # queued, or taken into a batch not yet answered
        while self._queue or self._bulk or self._busy:
            await asyncio.sleep(0.001)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def _collect(self) -> list[_Pending]:
        """Take requests until the batch is full, the active clients are all in, or the max
        delay passes; bulk requests only when no real-time one waits, and without waiting."""
        assert self._arrival is not None
        if not self._queue:
            return self._take_bulk()
        start = time.perf_counter()
        batch: list[_Pending] = []
        rows = 0
        while True:
            while self._queue and (
                not batch or rows + len(self._queue[0].x) <= self.max_batch_rows
            ):
                item = self._queue.popleft()
                self._queued_rows -= len(item.x)
                batch.append(item)
                rows += len(item.x)
            now = time.perf_counter()
            remaining = self.max_delay_s - (now - start)
            if rows >= self.max_batch_rows or self._queue or remaining <= 0:
                return batch
            if self.loop_behind():  # the pass that woke the collector read what waited
                return batch
            # wait for company only if other clients are active and, at the current arrival
            # rate, one is expected within the remaining delay (at a low rate spread over many
            # idle keep-alive connections, waiting would only add latency)
            if len(batch) >= self._active_clients(now) or remaining < self._interval_s:
                seen = len(self._queue)
                await asyncio.sleep(0)  # let the loop read requests that are already waiting
                if len(self._queue) == seen:
                    return batch
                continue
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                pass

    def _take_bulk(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._bulk and (not batch or rows + len(self._bulk[0].x) <= self.max_batch_rows):
            item = self._bulk.popleft()
            batch.append(item)
            rows += len(item.x)
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue and not self._bulk:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._busy = True
            try:
                await self._score_batch(loop)
            finally:
                self._busy = False

    async def _score_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Collect one batch, drop requests past their deadline, score, hand rows back."""
        batch = await self._collect()
        now = time.perf_counter()
        live = []
        for item in batch:
            waited = now - item.enqueued
            if item.future.done():
                continue  # the caller went away
            if waited > self.deadline_s:
                item.future.set_exception(
                    DeadlineExceeded(
                        f"waited {waited * 1e3:.0f} ms in the queue, deadline "
                        f"{self.deadline_s * 1e3:.0f} ms"
                    )
                )
                continue
            self.stats.on_wait(waited)
            live.append(item)
        if not live:
            return
        x = live[0].x if len(live) == 1 else np.concatenate([p.x for p in live])
        started = time.perf_counter()
        try:
            if len(x) <= self.inline_max_rows:
                scores = self._score(x)
            else:
                scores = await loop.run_in_executor(self._executor, self._score, x)
        except Exception as exc:  # one bad batch fails its requests, not the server
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.stats.on_compute(time.perf_counter() - started)
        self.stats.on_batch(len(x), len(live))
        offset = 0
        for item in live:
            n = len(item.x)
            if not item.future.done():
                item.future.set_result(scores[offset : offset + n])
            offset += n


async def scores_within(
    queued: asyncio.Future[np.ndarray], timeout_s: float, name: str
) -> np.ndarray:
    """The scores :meth:`MicroBatcher.enqueue` promised, or DeadlineExceeded (naming the
    setting ``name``) after ``timeout_s``; the batcher then skips the request. The future is
    awaited itself with a timer beside it: ``asyncio.wait_for`` (Python 3.11) hands the result
    on through a waiter future of its own, one more pass of the loop between the batch and
    the answer (tens of ms when the loop reads hundreds of connections a pass)."""
    timer = asyncio.get_running_loop().call_later(timeout_s, _expire, queued, timeout_s, name)
    try:
        return await queued
    finally:
        timer.cancel()


def _expire(queued: asyncio.Future[np.ndarray], timeout_s: float, name: str) -> None:
    if not queued.done():
        queued.set_exception(DeadlineExceeded(f"not scored within {name}={timeout_s:g} s"))
