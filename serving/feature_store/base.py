"""What a feature store takes and gives: one transaction in, its window aggregates out.

(Named tuples, not dataclasses: built per transaction on the request path, where a frozen
dataclass costs several times as much to create.)

A store records each transaction once (keyed by its id) and answers, atomically with the
recording, the integer aggregates of ``core.windows`` as of the event's own time. A
transaction already recorded is not counted again: the store answers the aggregates it gave
the first time, marked replayed. A retry must repeat the transaction: an id recorded with
another customer, terminal, amount (in cents) or time (in seconds) is refused with
TransactionConflict, and a request holding one records none of its transactions. Labels mark
a recorded transaction fraud or genuine.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from core.windows import CUSTOMER_RETENTION_S, TERMINAL_RETENTION_S


class Transaction(NamedTuple):
    transaction_id: str | int
    key: str  # core.windows.id_key of the id: the store's key and the tie-break
    customer: str  # entity keys (core.windows.id_key of the ids)
    terminal: str
    time_s: int
    cents: int


class Recorded(NamedTuple):
    # customer (count, cents) x 3 windows, then terminal (count, frauds) x 3 windows
    aggregates: tuple[int, ...]
    replayed: bool


class Label(NamedTuple):
    key: str  # core.windows.id_key of the transaction id
    fraud: bool


def too_old(time_s: int, latest_s: int, max_skew_s: int) -> bool:
    """An event more than the skew older than the latest the store has seen cannot be
    served: the events its windows need may be forgotten, and later ones already answered."""
    return time_s < latest_s - max_skew_s


def too_old_message(tx: Transaction, latest_s: int, max_skew_s: int) -> str:
    return (
        f"transaction {tx.transaction_id!r} is {latest_s - tx.time_s} s older than the latest "
        f"event the feature store has seen; events may arrive at most "
        f"FRAUD_MAX_EVENT_SKEW_S={max_skew_s} s out of order"
    )


# what a retry must repeat, in the order a conflict names them (the request's field names)
FINGERPRINT_FIELDS = ("customer_id", "terminal_id", "amount", "timestamp")


def fingerprint(tx: Transaction) -> tuple[str, str, int, int]:
    """What a retry of ``tx`` must repeat, in the order of ``FINGERPRINT_FIELDS``."""
    return (tx.customer, tx.terminal, tx.cents, tx.time_s)


def customer_hash(customer: str) -> int:
    """CRC-32 of a customer key, what a store keeps of it for a retry to repeat: stable
    across processes and stores (a snapshot or a Redis record outlives one), unlike ``hash``.
    Two customers colliding (2**-32) would let one's id pass as the other's retry."""
    return zlib.crc32(customer.encode("utf-8", "surrogatepass"))


def differing_fields(recorded: Sequence[object], sent: Sequence[object]) -> list[str]:
    """The names of the fields where two fingerprints (``FINGERPRINT_FIELDS`` order) differ."""
    return [name for name, a, b in zip(FINGERPRINT_FIELDS, recorded, sent, strict=True) if a != b]


def conflict_message(tx: Transaction, fields: Sequence[str]) -> str:
    return (
        f"transaction {tx.transaction_id!r} was recorded with other fields "
        f"({', '.join(fields)}); a retry must repeat the transaction exactly"
    )


def record_ttl_s(max_skew_s: int) -> int:
    """How long a transaction's record is kept: while a label can still change a window."""
    return TERMINAL_RETENTION_S + max_skew_s


def customer_horizon_s(latest_s: int, max_skew_s: int) -> int:
    """Customer events older than this can no longer be read by an accepted event."""
    return latest_s - max_skew_s - CUSTOMER_RETENTION_S


def terminal_horizon_s(latest_s: int, max_skew_s: int) -> int:
    return latest_s - max_skew_s - TERMINAL_RETENTION_S


class FeatureStore(Protocol):
    async def record(
        self, transactions: Sequence[Transaction], backfill: bool = False
    ) -> list[Recorded]:
        """Record each (in order) and return its aggregates; TransactionConflict, before
        recording any, when one reuses a recorded id (or one earlier in the request) with
        other fields; EventTooOld for a late one, unless ``backfill`` (transactions answered
        while the store was unreachable: their lateness is the outage's, and they must
        count). StoreUnavailable when the store does not answer within its deadline."""
        ...

    async def label(self, labels: Sequence[Label]) -> list[bool]:
        """Apply each label; False for a transaction the store does not hold."""
        ...

    async def close(self) -> None: ...
