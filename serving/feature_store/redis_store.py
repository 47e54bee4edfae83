"""The Redis store (``FRAUD_FEATURE_STORE=redis://...``): state shared by every worker and
instance, one script call per request (``serving.feature_store.redis_scripts``).

Each request's transactions are recorded by one ``EVALSHA`` (one round trip), atomically on
the server, so concurrent workers and instances never lose an update. Labels are one more
script call per label request. Failures of the client (connection refused, a timeout past
``deadline_s``) become :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.errors import EventTooOld, StoreUnavailable, TransactionConflict
from serving.feature_store.base import (
    Label,
    Recorded,
    Transaction,
    conflict_message,
    too_old_message,
)
from serving.feature_store.redis_scripts import (
    LABEL,
    LATEST_KEY,
    SEPARATOR,
    keys_for,
    record_script,
)


class RedisStore:
    def __init__(
        self, url: str, max_skew_s: int, deadline_s: float, password: str | None = None
    ) -> None:
        self.max_skew_s = max_skew_s
        self.deadline_s = deadline_s
        # a password in the URL wins over ``password`` (redis-py's rule)
        self.client: Any = aioredis.from_url(
            url,
            socket_timeout=deadline_s,
            socket_connect_timeout=deadline_s,
            password=password,
        )
        self._record = self.client.register_script(record_script())
        self._label = self.client.register_script(LABEL)

    async def record(
        self, transactions: Sequence[Transaction], backfill: bool = False
    ) -> list[Recorded]:
        keys, args = [LATEST_KEY], [str(self.max_skew_s), "1" if backfill else "0"]
        for tx in transactions:
            if SEPARATOR in tx.key:  # ids are printable; the parser refused anything else
                raise ValueError(f"id key {tx.key!r} holds the member separator")
            keys += keys_for(tx.customer, tx.terminal, tx.key)
            args += [tx.key, str(tx.time_s), str(tx.cents)]
        try:
            async with asyncio.timeout(self.deadline_s):
                status, index, latest, answers = await self._record(keys=keys, args=args)
        except (RedisError, TimeoutError) as exc:
            raise StoreUnavailable(f"feature store: {type(exc).__name__}: {exc}") from exc
        out = [_parse(answer) for answer in answers]
        if status == b"old":
            tx = transactions[int(index)]
            raise EventTooOld(too_old_message(tx, int(latest), self.max_skew_s))
        if status == b"conflict":  # latest: the differing fields, comma-separated
            fields = latest.decode().split(",")
            raise TransactionConflict(
                conflict_message(transactions[int(index)], fields), int(index)
            )
        return out

    async def label(self, labels: Sequence[Label]) -> list[bool]:
        keys = [keys_for("", "", label.key)[3] for label in labels]
        args = ["1" if label.fraud else "0" for label in labels]
        try:
            async with asyncio.timeout(self.deadline_s):
                found = await self._label(keys=keys, args=args)
        except (RedisError, TimeoutError) as exc:
            raise StoreUnavailable(f"feature store: {type(exc).__name__}: {exc}") from exc
        return [bool(x) for x in found]

    async def close(self) -> None:
        await self.client.aclose()


def _parse(answer: bytes) -> Recorded:
    replayed, _, aggregates = answer.partition(b":")
    return Recorded(tuple(int(v) for v in aggregates.split(b",")), replayed == b"1")
