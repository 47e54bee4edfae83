"""The transactions answered while the feature store was unreachable, waiting to be written
into it once it answers again, so the velocity windows do not go blind during an outage.

In memory a bounded queue, oldest first (at most ``BACKLOG_MAX``; beyond it the oldest are
dropped). With a directory (``FRAUD_BACKLOG_DIR``) every transaction added is also appended
to this process's spool file, ``backlog-<pid>.jsonl``, with one ``write`` before its answer
is sent, so a worker killed during an outage loses none of it: a process starting up takes
over the spool files of processes no longer running (renamed to a name of its own first, so
one process takes each), puts their transactions at the front of its queue and rewrites its
own spool from the queue before the taken files go. The spool is emptied when the queue is
(everything in it is then in the store). Writing one again is harmless: the store answers a
transaction recorded with the same fields as a replay and counts it once.

Nothing is written while the store answers: the spool costs only degraded requests. The
spool is rewritten from the queue once it holds twice the queue's bound (a long outage
fills the disk no faster than the queue holds). A directory that cannot be written is
logged once and the backlog is kept in memory only: a disk fault must not turn the fallback
answers into errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import orjson

from serving.feature_store.base import Transaction

BACKLOG_MAX = 100_000
_SPOOL = re.compile(r"backlog-(\d+)\.jsonl")
_CLAIM = re.compile(r"taking-(\d+)-.*\.jsonl")

log = logging.getLogger("fraud.serving.backlog")


class Backlog:
    def __init__(self, directory: Path | None, maxlen: int = BACKLOG_MAX) -> None:
        self.queue: deque[Transaction] = deque(maxlen=maxlen)
        self.directory = directory
        self._fd: int | None = None
        self._spooled = 0  # lines in the spool

    def __len__(self) -> int:
        return len(self.queue)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def add(self, transactions: Iterable[Transaction]) -> None:
        """Queue ``transactions`` and append them to the spool (one write)."""
        transactions = list(transactions)
        self.queue.extend(transactions)
        if self.directory is None or not transactions:
            return
        try:
            if self._spooled + len(transactions) > 2 * (self.queue.maxlen or BACKLOG_MAX):
                self._rewrite()
            else:
                self._write(_lines(transactions))
                self._spooled += len(transactions)
        except OSError:
            self._fail("outage backlog spool not writable; keeping the backlog in memory only")

    def written(self, batch: list[Transaction]) -> None:
        """``batch``, taken from the front of the queue, is in the store; an empty queue
        empties the spool. (A full queue may have dropped some of the batch meanwhile, as
        later degraded answers were added: only those still at the front go.)"""
        queue = self.queue
        for tx in batch:
            if queue and queue[0] is tx:
                queue.popleft()
        if not queue and self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                self._spooled = 0
            except OSError:
                self._fail("outage backlog spool not writable; keeping the backlog in memory only")

    def _path(self) -> Path:
        assert self.directory is not None
        return self.directory / f"backlog-{os.getpid()}.jsonl"

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            assert self.directory is not None
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        view = memoryview(data)
        while view:  # a regular file takes it all but on a fault; a short write continues
            view = view[os.write(self._fd, view) :]

    def _rewrite(self) -> None:
        """The spool replaced by the queue's contents (a new file renamed over it)."""
        path = self._path()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_lines(self.queue))
        os.replace(tmp, path)  # the last write before it is in the queue, so not lost
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._write(b"")  # reopens the new file for appending
        self._spooled = len(self.queue)

    def _fail(self, message: str) -> None:
        log.error(message, exc_info=True, extra={"fields": {"directory": str(self.directory)}})
        self.directory = None
        self.close()

    def recover(self) -> int:
        """:meth:`take_over`, a directory fault logged (the backlog then stays in memory)."""
        try:
            return self.take_over()
        except OSError:
            self._fail("outage backlog spools not readable; keeping the backlog in memory only")
            return 0

    def take_over(self) -> int:
        """Take over the spools of processes no longer running (one with this process's pid
        included, until this backlog writes its own: a restarted process may get a stopped
        one's pid); their transactions go first. Returns how many were taken."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        taken: list[Transaction] = []
        claims: list[Path] = []
        for path in sorted(self.directory.iterdir()):
            match = _SPOOL.fullmatch(path.name)
            taker = _CLAIM.fullmatch(path.name)
            if match is not None:
                pid = int(match.group(1))
            elif taker is not None:  # a taker stopped before it had spooled what it took
                pid = int(taker.group(1))
            else:
                continue
            if pid == os.getpid():
                if self._fd is not None and match is not None:  # this Backlog's own
                    continue
            elif _running(pid):
                continue
            claim = self.directory / f"taking-{os.getpid()}-{path.name}"
            try:
                path.rename(claim)  # one process wins each spool
            except FileNotFoundError:
                continue
            claims.append(claim)
            taken += _read(claim)
        if taken:
            earlier = list(self.queue)
            self.queue.clear()
            self.queue.extend(taken + earlier)  # beyond the bound, the oldest taken go
            self._rewrite()  # in this process's spool before the claims go
            log.warning(
                "outage backlog taken over from stopped processes",
                extra={"fields": {"transactions": len(taken)}},
            )
        for claim in claims:
            claim.unlink()
        return len(taken)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _lines(transactions: Iterable[Transaction]) -> bytes:
    return b"".join(orjson.dumps(tuple(tx)) + b"\n" for tx in transactions)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _read(path: Path) -> list[Transaction]:
    """A spool's transactions; a line cut short by the kill that stopped its writer (the
    last one) is skipped."""
    out: list[Transaction] = []
    with path.open("rb") as f:
        for line in f:
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                out.append(Transaction(*orjson.loads(line)))
    return out
