"""Data capture in SageMaker Model Monitor's format, for runs outside SageMaker.

On SageMaker the platform captures from the endpoint config's DataCaptureConfig; elsewhere
this writer produces the same files, so one drift job reads both. Layout and record::

    {directory}/{endpoint}/{variant}/yyyy/mm/dd/hh/{HH-MM-SS}-{pid}-{uuid8}.jsonl

    {"captureData": {"endpointInput":  {"observedContentType", "mode": "INPUT",  "data",
                                        "encoding": "JSON"|"CSV"|"BASE64"},
                     "endpointOutput": {"observedContentType", "mode": "OUTPUT", "data",
                                        "encoding"}},
     "eventMetadata": {"eventId", "inferenceTime": "2024-05-01T13:04:05Z", "inferenceId"?},
     "eventVersion": "0"}

Invariants:
- The server calls ``write`` on the request path, before it sends the response: the record
  is redacted, encoded and written to the file (the kernel has it; a worker killed after
  answering loses nothing it answered). ``submit`` is the batch form for other callers:
  it reads the clock, checks the bound and enqueues; one background thread redacts, encodes
  and writes.
- Identifiers are hashed in request and response bodies before they are encoded; a JSON body
  that does not parse is withheld, and with identifiers configured so is a body of a type
  that cannot be inspected (anything but JSON, CSV and numeric arrays).
- Memory is bounded: past ``max_queue_records`` records or ``max_queue_bytes`` bytes
  waiting, records are dropped and counted in ``dropped``, never queued.
- Each file belongs to one process and one hour of inference time (UTC); a new hour opens a
  new file under the new hour's directory. Each drained batch is flushed, so a crash loses
  at most the batch being written; files are fsynced when closed.
- ``close`` writes everything submitted before it, then stops the thread; it is idempotent.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple, cast

from serving.identifiers import CSV_TYPES, WITHHELD, IdentifierHasher, is_json_type, media_type

logger = logging.getLogger(__name__)

# binary bodies that are plain numbers: safe to keep (base64) even with identifiers configured
NUMERIC_BINARY_TYPES = frozenset(
    {"application/x-npy", "application/x-npz", "application/x-recordio-protobuf"}
)
MAX_BATCH_RECORDS = 1_000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Event(NamedTuple):
    request_body: bytes
    request_type: str
    response_body: bytes
    response_type: str
    inference_id: str | None
    inference_time: dt.datetime
    size_bytes: int


_STOP = object()


class DataCapture:
    """Samples invocations and writes them as capture records from one background thread."""

    def __init__(
        self,
        directory: Path,
        endpoint: str,
        variant: str,
        percent: float,
        hasher: IdentifierHasher,
        clock: Callable[[], dt.datetime] = utc_now,
        seed: int | None = None,
        *,
        max_queue_records: int = 100_000,
        max_queue_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"capture percent {percent} is outside 0-100")
        for what, name in (("endpoint", endpoint), ("variant", variant)):
            if not name or name in {".", ".."} or "/" in name or "\\" in name:
                raise ValueError(f"{what} name {name!r} cannot be a directory name")
        if max_queue_records < 1 or max_queue_bytes < 1:
            raise ValueError("capture queue bounds must be at least 1")
        self.root = Path(directory) / endpoint / variant
        self.percent = percent
        self.hasher = hasher
        self.written = 0
        self.dropped = 0
        self._clock = clock
        self._random = random.Random(seed)
        self._max_records = max_queue_records
        self._max_bytes = max_queue_bytes
        self._queue: queue.SimpleQueue[_Event | object] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the queued counts, dropped and the state
        self._queued_records = 0
        self._queued_bytes = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._file_lock = threading.Lock()  # the request path and the writer thread
        self._file_hour: dt.datetime | None = None

    # -- request path ------------------------------------------------------------------

    def should_capture(self) -> bool:
        """Whether to capture this invocation: true for ``percent`` % of calls."""
        if self.percent <= 0.0:
            return False
        return self.percent >= 100.0 or self._random.random() * 100.0 < self.percent

    def submit(
        self,
        request_body: bytes,
        request_type: str,
        response_body: bytes,
        response_type: str,
        inference_id: str | None,
    ) -> None:
        """Queue one invocation for capture; drops it (counted) when the queue is full."""
        event = self._event(request_body, request_type, response_body, response_type, inference_id)
        with self._lock:
            if (
                self._closed
                or self._queued_records >= self._max_records
                or self._queued_bytes + event.size_bytes > self._max_bytes
            ):
                self.dropped += 1
                return
            self._queued_records += 1
            self._queued_bytes += event.size_bytes
            # inside the lock, so nothing lands behind close()'s stop marker
            self._queue.put(event)

    def write(
        self,
        request_body: bytes,
        request_type: str,
        response_body: bytes,
        response_type: str,
        inference_id: str | None,
    ) -> None:
        """Capture one invocation now: encoded and written to the file before returning."""
        if self._closed:
            self.dropped += 1
            return
        event = self._event(request_body, request_type, response_body, response_type, inference_id)
        self._write_group([event], _hour(event.inference_time), lambda e: self._encode(e) + "\n")

    def _event(
        self,
        request_body: bytes,
        request_type: str,
        response_body: bytes,
        response_type: str,
        inference_id: str | None,
    ) -> _Event:
        return _Event(
            bytes(request_body),
            request_type,
            bytes(response_body),
            response_type,
            inference_id,
            self._clock(),
            len(request_body) + len(response_body),
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 10) -> None:
        """Write everything submitted so far, fsync, and stop the thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._queue.put(_STOP)
        if thread is None:
            self._run()  # never started: drain here
            return
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning(
                "data capture writer still busy after %.1f s; %d records pending",
                timeout_s,
                self._queued_records,
            )

    # -- writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                batch: list[_Event] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(cast(_Event, item))
                    if len(batch) >= MAX_BATCH_RECORDS:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write_batch(batch)
        finally:
            with self._file_lock:
                self._close_file()

    def _write_batch(self, batch: list[_Event]) -> None:
        with self._lock:
            self._queued_records -= len(batch)
            self._queued_bytes -= sum(event.size_bytes for event in batch)
        # group consecutive records of one hour: one write and one flush per group
        start = 0
        while start < len(batch):
            hour = _hour(batch[start].inference_time)
            end = start + 1
            while end < len(batch) and _hour(batch[end].inference_time) == hour:
                end += 1
            self._write_group(batch[start:end], hour, self._encode_yielding)
            start = end

    def _write_group(
        self, group: list[_Event], hour: dt.datetime, encode: Callable[[_Event], str]
    ) -> None:
        """Records of one hour: encoded, then one write and one flush."""
        try:
            lines = "".join(encode(event) for event in group)
            with self._file_lock:
                file = self._open_for(hour, group[0].inference_time)
                file.write(lines)
                file.flush()
                self.written += len(group)
        except Exception:
            # never let one bad write stop capture; no body content goes to the log
            logger.exception("data capture failed to write %d records", len(group))
            with self._lock:
                self.dropped += len(group)
            with self._file_lock:
                self._close_file()

    def _encode_yielding(self, event: _Event) -> str:
        line = self._encode(event) + "\n"
        # give the GIL back after each record: otherwise a busy writer holds it for up to
        # the 5 ms switch interval and request threads wait that long
        time.sleep(0)
        return line

    def _encode(self, event: _Event) -> str:
        metadata: dict[str, str] = {
            "eventId": str(uuid.uuid4()),
            "inferenceTime": _utc(event.inference_time).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if event.inference_id is not None:
            metadata["inferenceId"] = event.inference_id
        record = {
            "captureData": {
                "endpointInput": self._capture_body(
                    event.request_body, event.request_type, "INPUT"
                ),
                "endpointOutput": self._capture_body(
                    event.response_body, event.response_type, "OUTPUT"
                ),
            },
            "eventMetadata": metadata,
            "eventVersion": "0",
        }
        return json.dumps(record, separators=(",", ":"))

    def _capture_body(self, body: bytes, content_type: str, mode: str) -> dict[str, str]:
        media = media_type(content_type)
        encoding = "JSON" if is_json_type(media) else "CSV" if media in CSV_TYPES else "BASE64"
        data: str
        if encoding == "BASE64":
            if self.hasher.active and media not in NUMERIC_BINARY_TYPES:
                data, encoding = WITHHELD, "JSON"
            else:
                data = base64.b64encode(body).decode("ascii")
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                if not self.hasher.active:
                    # keep the exact bytes rather than a lossy decode
                    return _body(
                        content_type, mode, base64.b64encode(body).decode("ascii"), "BASE64"
                    )
                text = body.decode("utf-8", errors="replace")
            data = self.hasher.redact_text(text, content_type)
        return _body(content_type, mode, data, encoding)

    def _open_for(self, hour: dt.datetime, first: dt.datetime) -> IO[str]:
        if self._file is not None and self._file_hour == hour:
            return self._file
        self._close_file()
        directory = self.root / hour.strftime("%Y/%m/%d/%H")
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{_utc(first).strftime('%H-%M-%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        # line buffering: each batch is one write ending in a newline, so one flush per batch
        self._file = open(directory / name, "a", buffering=1, encoding="utf-8")
        self._file_hour = hour
        return self._file

    def _close_file(self) -> None:
        file, self._file, self._file_hour = self._file, None, None
        if file is None:
            return
        try:
            file.flush()
            os.fsync(file.fileno())
        except OSError:
            logger.exception("data capture failed to sync %s", file.name)
        finally:
            file.close()


def _body(content_type: str, mode: str, data: str, encoding: str) -> dict[str, str]:
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def _utc(moment: dt.datetime) -> dt.datetime:
    # a naive clock is taken to be UTC already
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _hour(moment: dt.datetime) -> dt.datetime:
    return _utc(moment).replace(minute=0, second=0, microsecond=0)
