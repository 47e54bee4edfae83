"""The Redis store (``FRAUD_FEATURE_STORE=redis://...``): state shared by every worker and
instance, one script call per request (``serving.feature_store.redis_scripts``).

Each request's transactions are recorded by one ``EVALSHA`` (one round trip), atomically on
the server, so concurrent workers and instances never lose an update. Labels are one more
script call per label request. The client is ``serving.feature_store.resp`` (one pipelined
connection per process). Failures (connection refused or lost, an error reply, no answer
within ``deadline_s``: the connection is then closed and the next request reconnects)
become :class:`StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from serving.errors import EventTooOld, StoreUnavailable, TransactionConflict
from serving.feature_store.base import (
    Label,
    Recorded,
    Transaction,
    conflict_message,
    too_old_message,
)
from serving.feature_store.redis_scripts import (
    AGGREGATES,
    LATEST_KEY,
    SEPARATOR,
    keys_for,
    label_script,
    record_script,
    script_args,
    transaction_args,
)
from serving.feature_store.resp import RedisClient, ReplyError, Script

_REPLAYED = ord("1")


class RedisStore:
    def __init__(
        self, url: str, max_skew_s: int, deadline_s: float, password: str | None = None
    ) -> None:
        self.max_skew_s = max_skew_s
        self.deadline_s = deadline_s
        # a password in the URL wins over ``password``
        self.client = RedisClient(
            url, password=password, connect_timeout_s=deadline_s, timeout_s=deadline_s
        )
        self._record = Script(record_script())
        self._head = {b: script_args(max_skew_s, b) for b in (False, True)}  # by backfill
        self._label = Script(label_script())

    async def _run(self, script: Script, keys: list[str], args: list[str]) -> Any:
        try:
            return await self.client.run(script, keys, args)
        except TimeoutError as exc:  # the client closed the connection
            raise StoreUnavailable(f"feature store: no answer within {self.deadline_s} s") from exc
        except (OSError, ReplyError) as exc:
            raise StoreUnavailable(f"feature store: {type(exc).__name__}: {exc}") from exc

    async def record(
        self, transactions: Sequence[Transaction], backfill: bool = False
    ) -> list[Recorded]:
        keys, args = [LATEST_KEY], list(self._head[backfill])
        for tx in transactions:
            if SEPARATOR in tx.key:  # ids are printable; the parser refused anything else
                raise ValueError(f"id key {tx.key!r} holds the member separator")
            keys += keys_for(tx.customer, tx.terminal, tx.key)
            args += transaction_args(tx)
        status, index, detail, answers = await self._run(self._record, keys, args)
        if status == b"old":  # detail: the latest event time
            tx = transactions[int(index)]
            raise EventTooOld(too_old_message(tx, int(detail), self.max_skew_s))
        if status == b"conflict":  # detail: the differing fields, comma-separated
            fields = detail.decode().split(",")
            raise TransactionConflict(
                conflict_message(transactions[int(index)], fields), int(index)
            )
        # detail: b"0" or b"1" (replayed) per transaction
        unpack = AGGREGATES.unpack
        return [
            Recorded(unpack(a), flag == _REPLAYED) for a, flag in zip(answers, detail, strict=True)
        ]

    async def label(self, labels: Sequence[Label]) -> list[bool]:
        keys = [keys_for("", "", label.key)[3] for label in labels]
        args = ["1" if label.fraud else "0" for label in labels]
        found = await self._run(self._label, keys, args)
        return [bool(x) for x in found]

    async def close(self) -> None:
        await self.client.close()
