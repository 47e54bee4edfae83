"""Two lanes per worker: real-time requests never wait behind bulk ones.

A card authorisation is one record and must be answered in milliseconds; a batch replay of
500 rows can wait or be refused. Sharing one queue, the authorisation waited behind the
replays' rows and their decoding, encoding and logging on the event loop (in ``make
loadtest``'s spike of 500-row CSV replays, single records waited up to 1.4 s, p99, and some
were shed with the replays).

The real-time lane is every request of at most ``realtime_max_rows`` rows whose body is at
most ``bulk_body_bytes``; everything else is bulk. Bulk requests hold one of
``concurrency`` slots (per worker) from decoding to their recorded answer, so at most that
many are ever being decoded, scored or encoded; others wait in arrival order, at most
``max_waiting`` of them and for at most ``wait_s``, and are refused with 503 beyond either
bound. The micro-batcher serves real-time rows first (``MicroBatcher.enqueue(bulk=...)``),
so a real-time request waits at most for one bulk batch already being scored. A bulk
request's decoding and recording run on a thread of their own (a 500-row CSV body takes
about 3 ms to decode and 1.6 ms to log, time the loop would not answer anything), and the
worker's GIL switch interval drops from Python's 5 ms to ``SWITCH_INTERVAL_S``, so the loop
thread gets the interpreter back within that when a real-time request arrives.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType

from serving.errors import Overloaded

SWITCH_INTERVAL_S = 0.000_5


def set_switch_interval() -> None:
    """A thread doing bulk work hands the interpreter to the loop thread within this."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


class BulkLane:
    """Admission of bulk requests: a bounded number in progress, a bounded FIFO wait."""

    def __init__(self, concurrency: int, max_waiting: int, wait_s: float) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.shed = 0  # refused: too many waiting, or waited too long

    async def __aenter__(self) -> BulkLane:
        if self._slots.locked():
            if self.waiting >= self.max_waiting:
                self.shed += 1
                raise Overloaded(
                    f"bulk lane full ({self.concurrency} in progress, {self.waiting} waiting); "
                    "retry shortly, or send fewer rows per request"
                )
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except TimeoutError as exc:
                self.shed += 1
                raise Overloaded(
                    f"bulk lane: no slot within {self.wait_s * 1e3:.0f} ms; retry shortly"
                ) from exc
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._slots.release()
