"""The embedded store: ``core.windows`` state in this process, the default.

Per customer a :class:`CustomerWindows`, per terminal a :class:`TerminalWindows`, per
transaction a record (time, terminal, label, the aggregates it was answered with). Reads and
updates run on the event loop's thread, so each transaction's read-and-update is atomic.

Memory stays bounded: an entity's events older than its retention plus the skew are dropped
when it sees a new one (at most ``PRUNE_SLACK_S`` late); records leave (in arrival order)
once no label can change a window; entities without events left are swept every
``SWEEP_EVERY`` records.

Memory is packed, because a month of records for every card is the bulk of it: the windows
keep times and running amount totals in ``array('q')``; records are columns in blocks of
``BLOCK`` arrivals (aggregates in arrays, the terminal as a reference to its windows, the
label as a byte, and what a retry must repeat: the cents and a CRC-32 of the customer key),
found through one dict from id key to arrival number, and a block is freed once its last
record has left. 20.7 kB per customer at the simulator's traffic against 45.8 kB with an
object per record and a tuple per event (``python -m benchmarks.transaction_bench --only
memory``; benchmarks/RESULTS.md, "Feature store memory"). A snapshot in an earlier format
is not read (logged; the store starts empty, as after an unreadable one).

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
from array import array
from collections.abc import Sequence
from pathlib import Path

from core.windows import DAY_S, CustomerWindows, TerminalWindows
from serving.errors import EventTooOld, TransactionConflict
from serving.feature_store.base import (
    Label,
    Recorded,
    Transaction,
    conflict_message,
    customer_hash,
    customer_horizon_s,
    differing_fields,
    fingerprint,
    record_ttl_s,
    terminal_horizon_s,
    too_old,
    too_old_message,
)

SWEEP_EVERY = 65_536
# an entity's events past retention are dropped once the oldest is this far past it: one
# prune per two days of a card's traffic instead of one at nearly every event, for ~4 more
# events held per card (reads never reach them)
PRUNE_SLACK_S = 2 * DAY_S
BLOCK = 4_096  # records per block: expired records free their memory a block at a time

log = logging.getLogger("fraud.serving.feature_store")
_FORMAT = 4


class _Block:
    """Up to ``BLOCK`` consecutive records, as columns."""

    __slots__ = ("keys", "terminals", "times", "frauds", "counts", "sums", "customers", "cents")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.terminals: list[TerminalWindows] = []
        self.times = array("q")
        # what a retry must repeat besides the terminal and time: the customer as a hash of
        # its key (4 bytes; a customer's windows may be swept before its records leave) and
        # the cents
        self.customers = array("I")
        self.cents = array("q")
        self.frauds = bytearray()
        # 9 counts (each at most the events held in memory: 32 bits hold them) and 3 cent
        # sums per record; an impossible overflow raises rather than wraps
        self.counts = array("I")
        self.sums = array("q")


class Records:
    """The records in arrival order: record ``n`` (its arrival number) is in block
    ``n // BLOCK - first // BLOCK`` at ``n % BLOCK``; they leave from the front only."""

    __slots__ = ("index", "blocks", "first", "end")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}  # id key -> arrival number
        self.blocks: list[_Block] = []
        self.first = 0  # arrival number of the oldest record kept
        self.end = 0  # arrival number of the next one

    def __len__(self) -> int:
        return len(self.index)

    def locate(self, key: str) -> tuple[_Block, int] | None:
        n = self.index.get(key)
        if n is None:
            return None
        return self.blocks[n // BLOCK - self.first // BLOCK], n % BLOCK

    def add(self, tx: Transaction, term: TerminalWindows, aggregates: tuple[int, ...]) -> None:
        if self.end % BLOCK == 0:
            self.blocks.append(_Block())
        block = self.blocks[-1]
        block.keys.append(tx.key)
        block.terminals.append(term)
        block.times.append(tx.time_s)
        block.customers.append(customer_hash(tx.customer))
        block.cents.append(tx.cents)
        block.frauds.append(0)
        # (count, cents) x 3 for the customer, then (count, frauds) x 3 for the terminal
        a = aggregates
        block.counts.extend((a[0], a[2], a[4], a[6], a[7], a[8], a[9], a[10], a[11]))
        block.sums.extend((a[1], a[3], a[5]))
        self.index[tx.key] = self.end
        self.end += 1

    def drop_oldest(self) -> None:
        at = self.first % BLOCK
        block = self.blocks[0]
        del self.index[block.keys[at]]
        block.keys[at] = ""  # the key string can go before its block does
        self.first += 1
        if self.first % BLOCK == 0:
            del self.blocks[0]


def aggregates_at(block: _Block, at: int) -> tuple[int, ...]:
    c = block.counts[9 * at : 9 * at + 9]
    s = block.sums[3 * at : 3 * at + 3]
    return (c[0], s[0], c[1], s[1], c[2], s[2], *c[3:])


class EmbeddedStore:
    def __init__(self, max_skew_s: int, path: Path | None = None) -> None:
        self.max_skew_s = max_skew_s
        self.path = path
        self.customers: dict[str, CustomerWindows] = {}
        self.terminals: dict[str, TerminalWindows] = {}
        self.records = Records()
        self.latest_s = 0
        self._since_sweep = 0
        self.dirty = False
        # how far back from an entity's latest event its events are kept, and the records
        # from the store's latest (the horizons of ``base``, as offsets: the step runs per
        # transaction)
        self._customer_keep_s = -customer_horizon_s(0, max_skew_s)
        self._terminal_keep_s = -terminal_horizon_s(0, max_skew_s)
        self._record_ttl_s = record_ttl_s(max_skew_s)

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
            store.records = state["records"]
            store.latest_s = state["latest_s"]
        else:
            log.error(
                "feature store snapshot in another format; starting empty",
                extra={"fields": {"path": str(path), "format": _FORMAT}},
            )
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
        if len(transactions) > 1:  # one transaction is checked by record_one before it writes
            self._refuse_conflicts(transactions)
        return [self.record_one(tx, backfill) for tx in transactions]

    async def label(self, labels: Sequence[Label]) -> list[bool]:
        return [self.label_one(label) for label in labels]

    async def close(self) -> None:
        if self.dirty:
            self.write(self.snapshot())

    # -- synchronous core -----------------------------------------------------------------

    def record_one(self, tx: Transaction, backfill: bool = False) -> Recorded:
        """Record one transaction; TransactionConflict (index 0) for a recorded id with other
        fields."""
        found = self.records.locate(tx.key)
        if found is not None:
            fields = self._differing(*found, tx)
            if fields:
                raise TransactionConflict(conflict_message(tx, fields), 0)
            return Recorded(aggregates_at(*found), True)
        cust = self.customers.get(tx.customer)
        if cust is None:
            cust = self.customers[tx.customer] = CustomerWindows()
        term = self.terminals.get(tx.terminal)
        if term is None:
            term = self.terminals[tx.terminal] = TerminalWindows()
        time_s = tx.time_s
        if not backfill and too_old(time_s, self.latest_s, self.max_skew_s):
            raise EventTooOld(too_old_message(tx, self.latest_s, self.max_skew_s))
        term.add(time_s)
        aggregates = cust.add_and_read(time_s, tx.key, tx.cents) + term.read(time_s)
        # the record refers to the terminal's windows, not its id: a terminal is swept only
        # once its events are past the records' time to live
        self.records.add(tx, term, aggregates)
        self.dirty = True
        if time_s > self.latest_s:
            self.latest_s = time_s
        self._forget(cust, term)
        return Recorded(aggregates, False)

    def _refuse_conflicts(self, transactions: Sequence[Transaction]) -> None:
        """TransactionConflict for the first transaction whose id is recorded, or sent earlier
        in the request, with other fields: checked before any is recorded."""
        earlier: dict[str, Transaction] = {}
        for i, tx in enumerate(transactions):
            first = earlier.setdefault(tx.key, tx)
            if first is not tx:  # the earlier one is checked against the record already
                fields = differing_fields(fingerprint(first), fingerprint(tx))
            else:
                found = self.records.locate(tx.key)
                fields = [] if found is None else self._differing(*found, tx)
            if fields:
                raise TransactionConflict(conflict_message(tx, fields), i)

    def _differing(self, block: _Block, at: int, tx: Transaction) -> list[str]:
        """The fields ``tx`` sends otherwise than the record at ``at`` holds. A record's
        terminal windows live as long as the record, so the terminal compares by identity."""
        recorded = (block.customers[at], block.terminals[at], block.cents[at], block.times[at])
        sent = (customer_hash(tx.customer), self.terminals.get(tx.terminal), tx.cents, tx.time_s)
        return [] if recorded == sent else differing_fields(recorded, sent)

    def label_one(self, label: Label) -> bool:
        found = self.records.locate(label.key)
        if found is None:
            return False
        block, at = found
        if bool(block.frauds[at]) != label.fraud:
            block.terminals[at].label(block.times[at], label.fraud)
            block.frauds[at] = label.fraud
            self.dirty = True
        return True

    def label_of(self, key: str) -> bool | None:
        """The label of the transaction with id key ``key``; None when not recorded."""
        found = self.records.locate(key)
        return None if found is None else bool(found[0].frauds[found[1]])

    def _forget(self, cust: CustomerWindows, term: TerminalWindows) -> None:
        times = cust.times
        horizon = times[-1] - self._customer_keep_s
        if times[0] < horizon - PRUNE_SLACK_S:
            cust.prune(horizon)
        times = term.times
        horizon = times[-1] - self._terminal_keep_s
        if times[0] < horizon - PRUNE_SLACK_S:
            term.prune(horizon)
        oldest = self.latest_s - self._record_ttl_s
        records = self.records
        while records.first != records.end:
            if records.blocks[0].times[records.first % BLOCK] >= oldest:
                break
            records.drop_oldest()
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
            if c.times and c.times[-1] >= customer_horizon_s(self.latest_s, skew)
        }
        self.terminals = {
            k: t
            for k, t in self.terminals.items()
            if t.times and t.times[-1] >= terminal_horizon_s(self.latest_s, skew)
        }
