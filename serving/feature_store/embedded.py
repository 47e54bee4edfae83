"""The embedded store: ``core.windows`` state in this process, the default.

Per customer a :class:`CustomerWindows`, per terminal a :class:`TerminalWindows`, per
transaction a record (time, terminal, label, the aggregates it was answered with). Reads and
updates run on the event loop's thread, so each transaction's read-and-update is atomic.

Memory stays bounded: an entity's events older than its retention plus the skew are dropped
when it sees a new one; records leave (in arrival order) once no label can change a window;
entities without events left are swept every ``SWEEP_EVERY`` records.

Persistence: :meth:`save` writes a pickle (temporary file, then an atomic rename) and
:meth:`open` reads it back; the server saves periodically and at shutdown. A process killed
with SIGKILL loses what arrived since the last save. The file is this process's own state:
never load one from elsewhere.

One worker, one instance: the state is this process's. The server refuses the transaction
path when it runs several workers with this store (each would see part of a card's traffic);
use the Redis store there.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from core.windows import CustomerWindows, TerminalWindows
from serving.errors import EventTooOld
from serving.feature_store.base import (
    Label,
    Recorded,
    Transaction,
    customer_horizon_s,
    record_ttl_s,
    terminal_horizon_s,
    too_old,
    too_old_message,
)

SWEEP_EVERY = 65_536

log = logging.getLogger("fraud.serving.feature_store")
_FORMAT = 1


class _Record:
    __slots__ = ("time_s", "terminal", "fraud", "aggregates")

    def __init__(self, time_s: int, terminal: str, aggregates: tuple[int, ...]) -> None:
        self.time_s = time_s
        self.terminal = terminal
        self.fraud = False
        self.aggregates = aggregates


class EmbeddedStore:
    def __init__(self, max_skew_s: int, path: Path | None = None) -> None:
        self.max_skew_s = max_skew_s
        self.path = path
        self.customers: dict[str, CustomerWindows] = {}
        self.terminals: dict[str, TerminalWindows] = {}
        self.records: dict[str, _Record] = {}
        self._arrivals: deque[str] = deque()  # record keys in arrival order
        self.latest_s = 0
        self._since_sweep = 0
        self.dirty = False

    @classmethod
    def open(cls, max_skew_s: int, path: Path | None) -> EmbeddedStore:
        """A store with the state saved at ``path`` (if the file exists), saving there."""
        store = cls(max_skew_s, path)
        if path is None or not path.exists():
            return store
        try:
            with path.open("rb") as f:
                state = pickle.load(f)
        except Exception:  # pickle raises many types for a damaged file
            # an unreadable snapshot must not keep the server down: the windows refill
            log.error(
                "feature store snapshot unreadable; starting empty",
                exc_info=True,
                extra={"fields": {"path": str(path)}},
            )
            return store
        if isinstance(state, dict) and state.get("format") == _FORMAT:
            store.customers, store.terminals = state["customers"], state["terminals"]
            store.records, store._arrivals = state["records"], state["arrivals"]
            store.latest_s = state["latest_s"]
        return store

    def snapshot(self) -> bytes:
        """The whole state as bytes (taken on the loop's thread: consistent)."""
        self.dirty = False
        return pickle.dumps(
            {
                "format": _FORMAT,
                "customers": self.customers,
                "terminals": self.terminals,
                "records": self.records,
                "arrivals": self._arrivals,
                "latest_s": self.latest_s,
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def write(self, data: bytes) -> None:
        """Write a snapshot to ``path`` atomically (safe to run in a thread)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- the store protocol ---------------------------------------------------------------

    async def record(
        self, transactions: Sequence[Transaction], backfill: bool = False
    ) -> list[Recorded]:
        return [self.record_one(tx, backfill) for tx in transactions]

    async def label(self, labels: Sequence[Label]) -> list[bool]:
        return [self.label_one(label) for label in labels]

    async def close(self) -> None:
        if self.dirty:
            self.write(self.snapshot())

    # -- synchronous core -----------------------------------------------------------------

    def record_one(self, tx: Transaction, backfill: bool = False) -> Recorded:
        found = self.records.get(tx.key)
        if found is not None:
            return Recorded(found.aggregates, True)
        cust = self.customers.get(tx.customer)
        if cust is None:
            cust = self.customers[tx.customer] = CustomerWindows()
        term = self.terminals.get(tx.terminal)
        if term is None:
            term = self.terminals[tx.terminal] = TerminalWindows()
        if not backfill and too_old(tx.time_s, self.latest_s, self.max_skew_s):
            raise EventTooOld(too_old_message(tx, self.latest_s, self.max_skew_s))
        cust.add(tx.time_s, tx.key, tx.cents)
        term.add(tx.time_s)
        aggregates = cust.read(tx.time_s, tx.key) + term.read(tx.time_s)
        self.records[tx.key] = _Record(tx.time_s, tx.terminal, aggregates)
        self._arrivals.append(tx.key)
        self.dirty = True
        if tx.time_s > self.latest_s:
            self.latest_s = tx.time_s
        self._forget(cust, term)
        return Recorded(aggregates, False)

    def label_one(self, label: Label) -> bool:
        found = self.records.get(label.key)
        if found is None:
            return False
        if found.fraud != label.fraud:
            term = self.terminals.get(found.terminal)
            if term is not None:
                term.label(found.time_s, label.fraud)
            found.fraud = label.fraud
            self.dirty = True
        return True

    def _forget(self, cust: CustomerWindows, term: TerminalWindows) -> None:
        skew = self.max_skew_s
        if cust.keys[0][0] < customer_horizon_s(cust.keys[-1][0], skew):
            cust.prune(customer_horizon_s(cust.keys[-1][0], skew))
        if term.times[0] < terminal_horizon_s(term.times[-1], skew):
            term.prune(terminal_horizon_s(term.times[-1], skew))
        oldest = self.latest_s - record_ttl_s(skew)
        while self._arrivals:
            rec = self.records.get(self._arrivals[0])
            if rec is not None and rec.time_s >= oldest:
                break
            self.records.pop(self._arrivals.popleft(), None)
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            self.sweep()

    def sweep(self) -> None:
        """Drop entities whose every event is past retention."""
        skew = self.max_skew_s
        self.customers = {
            k: c
            for k, c in self.customers.items()
            if c.keys and c.keys[-1][0] >= customer_horizon_s(self.latest_s, skew)
        }
        self.terminals = {
            k: t
            for k, t in self.terminals.items()
            if t.times and t.times[-1] >= terminal_horizon_s(self.latest_s, skew)
        }
