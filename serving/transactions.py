"""The transaction path of ``POST /invocations``: raw transactions in, scores out.

``{"transactions": [...]}``: each transaction is recorded in the feature store, which
answers its window aggregates as of the event's own time (``core.windows``); the features
are scored by the same model and batcher as feature vectors. ``{"labels": [...]}`` marks
recorded transactions fraud or genuine. Request and response fields are listed in
``serving.transaction_requests`` and the README.

The record of a scored transaction (decision log and capture) holds its ``transaction_id``
and the computed features, so monitoring, label joins and the replay of a disputed decision
never recompute them; customer and terminal ids stay out of the decision log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from core.fallback import FallbackPolicy
from core.feature_names import FEATURE_NAMES
from core.windows import feature_row, id_key
from serving import codecs
from serving.backlog import Backlog
from serving.errors import BadRequest, StoreUnavailable, TransactionConflict
from serving.feature_store.base import FeatureStore, Transaction
from serving.feature_store.embedded import EmbeddedStore
from serving.metrics import ServerMetrics
from serving.transaction_requests import parse_labels, parse_transactions

SAVE_INTERVAL_S = 60.0
BACKFILL_BATCH = 500

log = logging.getLogger("fraud.serving.transactions")

ScoreRows = Callable[[np.ndarray], Awaitable[np.ndarray]]
Decide = Callable[[np.ndarray], list[str]]


@dataclass
class Answer:
    body: bytes
    # one per transaction, as answered (with its features when the request asked for them)
    predictions: list[dict[str, object]]
    # the features each prediction was scored on; None when none were computed (a degraded
    # answer, labels)
    rows: list[list[float]] | None = None

    def records(self) -> list[dict[str, object]]:
        """The predictions with their features: what the capture keeps. Built only when a
        record is written (most requests need only :attr:`predictions`)."""
        if self.rows is None:
            return self.predictions
        return [
            {**p, "features": dict(zip(FEATURE_NAMES, row, strict=True))}
            for p, row in zip(self.predictions, self.rows, strict=True)
        ]


class TransactionPath:
    def __init__(
        self,
        store: FeatureStore,
        allow_numeric_ids: bool,
        policies: dict[str, FallbackPolicy],
        metrics: ServerMetrics,
        max_clock_ahead_s: float = 300.0,
        backlog_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.allow_numeric_ids = allow_numeric_ids
        self.max_clock_ahead_s = max_clock_ahead_s
        self.default_policy = policies.get("default", FallbackPolicy())
        # by terminal key (core.windows.id_key); a numeric name also covers the integer id
        self.policies = {id_key(m): p for m, p in policies.items() if m != "default"}
        self.policies |= {id_key(int(m)): p for m, p in policies.items() if m.isdigit()}
        self.metrics = metrics
        # answered while the store was unreachable, written into it once it answers again
        self.backlog = Backlog(backlog_dir)
        self._backfilling = asyncio.Lock()  # one backfill at a time; others do not wait
        self.store_down = False
        self._save_timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Future[None] | None = None

    def _refuse_future(self, transactions: list[Transaction]) -> None:
        """An event dated ahead of this server's clock by more than the limit is refused:
        the store would take its time as the newest and refuse every later real event as
        too old (one client with a wrong clock would blind the windows for everyone)."""
        now = time.time()
        limit = now + self.max_clock_ahead_s
        for i, tx in enumerate(transactions):
            if tx.time_s > limit:
                raise BadRequest(
                    f"transactions[{i}].timestamp is {tx.time_s - now:.0f} s ahead of this "
                    f"server's clock; at most FRAUD_MAX_CLOCK_AHEAD_S="
                    f"{self.max_clock_ahead_s:g} s ahead is accepted"
                )

    async def handle(
        self, doc: dict[str, Any], score: ScoreRows, decide: Decide, versions: dict[str, str]
    ) -> Answer:
        """``versions``: model_version, thresholds_version and precision, written into the
        response as for vectors."""
        if "transactions" in doc and "labels" in doc:
            raise BadRequest("send transactions and labels in separate requests")
        if "transactions" in doc:
            return await self._transactions(doc, score, decide, versions)
        return await self._labels(doc)

    async def _transactions(
        self, doc: dict[str, Any], score: ScoreRows, decide: Decide, versions: dict[str, str]
    ) -> Answer:
        request = parse_transactions(doc, self.allow_numeric_ids)
        self._refuse_future(request.transactions)
        try:
            if self.backlog and not self._backfilling.locked():
                async with self._backfilling:
                    await self._backfill()
            recorded = await self.store.record(request.transactions)
        except StoreUnavailable as exc:
            return self._degraded(request.transactions, versions, exc)
        if self.store_down:
            self.store_down = False
            log.info(
                "feature store answers again", extra={"fields": {"backlog": len(self.backlog)}}
            )
        rows = [
            feature_row(tx.time_s, tx.cents, r.aggregates)
            for tx, r in zip(request.transactions, recorded, strict=True)
        ]
        scores = await score(np.array(rows, dtype=np.float32))
        decisions = decide(scores)
        predictions: list[dict[str, object]] = [
            {"transaction_id": tx.transaction_id, "score": s, "decision": d, "replayed": r.replayed}
            for tx, r, s, d in zip(
                request.transactions, recorded, scores.tolist(), decisions, strict=True
            )
        ]
        answer = Answer(b"", predictions, rows)
        answer.body = codecs.encode(
            answer.records() if request.return_features else predictions, codecs.JSON, versions
        )
        return answer

    def _degraded(
        self, transactions: list[Transaction], versions: dict[str, str], exc: StoreUnavailable
    ) -> Answer:
        """The merchants' fallback policies decide; the transactions wait in the backlog."""
        if not self.store_down:  # once per outage, not once per request
            self.store_down = True
            log.warning(
                "feature store unavailable: fallback policy", extra={"fields": {"error": str(exc)}}
            )
        self.backlog.add(transactions)
        predictions: list[dict[str, object]] = []
        for tx in transactions:
            policy = self.policies.get(tx.terminal, self.default_policy)
            decision = policy.decide(tx.cents / 100.0)
            self.metrics.degraded.inc((decision,))
            predictions.append(
                {
                    "transaction_id": tx.transaction_id,
                    "score": None,
                    "decision": decision,
                    "replayed": False,
                    "degraded": True,
                }
            )
        body = {"predictions": predictions, **versions}
        return Answer(orjson.dumps(body), predictions)

    async def _backfill(self) -> None:
        """Write the backlog into the store, oldest first (StoreUnavailable if still down).
        A transaction whose id the store holds with other fields (recorded before the
        outage, or sent again otherwise during it) is dropped, logged and counted: the
        record stands, and the rest of its batch is written without it."""
        queue = self.backlog.queue
        while queue:
            batch = [queue[i] for i in range(min(BACKFILL_BATCH, len(queue)))]
            try:
                await self.store.record(batch, backfill=True)
            except TransactionConflict as exc:  # nothing of the batch was recorded
                # (a full backlog drops its oldest as requests append meanwhile: check first)
                if queue[exc.index] is batch[exc.index]:
                    del queue[exc.index]
                    self.metrics.backfill_conflicts.inc(())
                    log.warning(
                        "backfill skipped a transaction", extra={"fields": {"error": str(exc)}}
                    )
                continue
            self.backlog.written(batch)
            self.metrics.backfilled.inc((), len(batch))
        self.backlog.written([])  # the last one may have been dropped: the spool empties

    async def _labels(self, doc: dict[str, Any]) -> Answer:
        labels = parse_labels(doc, self.allow_numeric_ids)
        known = await self.store.label([label for _, label in labels])
        unknown = [tx_id for (tx_id, _), ok in zip(labels, known, strict=True) if not ok]
        body = {"labels_accepted": len(labels) - len(unknown), "unknown_transaction_ids": unknown}
        return Answer(orjson.dumps(body), [])

    # -- life cycle (the embedded store's snapshots) --------------------------------------

    def start(self) -> None:
        self.backlog.recover()  # what stopped processes answered in an outage goes first
        if isinstance(self.store, EmbeddedStore) and self.store.path is not None:
            loop = asyncio.get_running_loop()
            self._save_timer = loop.call_later(SAVE_INTERVAL_S, self._save)

    def _save(self) -> None:
        store = self.store
        loop = asyncio.get_running_loop()
        if isinstance(store, EmbeddedStore) and store.dirty and self._saving is None:
            # the snapshot is taken here, on the loop's thread; the write runs in a thread
            self._saving = loop.run_in_executor(None, store.write, store.snapshot())
            self._saving.add_done_callback(self._saved)
        self._save_timer = loop.call_later(SAVE_INTERVAL_S, self._save)

    def _saved(self, future: asyncio.Future[None]) -> None:
        self._saving = None
        if future.exception() is not None:
            log.error("feature store snapshot failed", exc_info=future.exception())

    async def close(self) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
        try:
            if self._saving is not None:
                await self._saving
            await self.store.close()
        except OSError:  # an unwritable snapshot path must not stop the shutdown
            log.error("feature store snapshot failed", exc_info=True)
        self.backlog.close()  # last: a degraded answer still in flight is spooled
