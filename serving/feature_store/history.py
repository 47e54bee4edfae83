"""Warming a store from a transaction history and loading batches of labels.

``load_history`` records the history in event order, in batches, delivering each label
before any batch that reaches its transaction's time plus the label delay (what the
offline table assumes), so a new deployment starts with full windows. It records with
``backfill`` (a history is older than the skew by nature). Load the embedded store before
the server starts: the server's snapshot replaces the file at shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.windows import LABEL_DELAY_S, id_key
from serving.feature_store.base import FeatureStore, Label, Transaction

BATCH = 500


@dataclass(frozen=True)
class HistoryRow:
    transaction_id: str | int
    customer_id: str | int
    terminal_id: str | int
    time_s: int
    cents: int
    fraud: bool


async def load_history(store: FeatureStore, rows: Sequence[HistoryRow]) -> int:
    """Record ``rows`` (any order) and their labels; the number of transactions recorded."""
    ordered = sorted(rows, key=lambda r: (r.time_s, id_key(r.transaction_id)))
    labelled = start = 0
    while start < len(ordered):
        # a batch spans less than the delay: every label due inside it belongs to a
        # transaction recorded by an earlier batch
        end = start + 1
        first = ordered[start].time_s
        while (
            end < min(start + BATCH, len(ordered)) and ordered[end].time_s < first + LABEL_DELAY_S
        ):
            end += 1
        batch = ordered[start:end]
        due = labelled
        while due < start and ordered[due].time_s + LABEL_DELAY_S <= batch[-1].time_s:
            due += 1
        if due > labelled:
            await store.label([_label(r) for r in ordered[labelled:due]])
            labelled = due
        await store.record(
            [
                Transaction(
                    r.transaction_id,
                    id_key(r.transaction_id),
                    id_key(r.customer_id),
                    id_key(r.terminal_id),
                    r.time_s,
                    r.cents,
                )
                for r in batch
            ],
            backfill=True,
        )
        start = end
    if labelled < len(ordered):
        await store.label([_label(r) for r in ordered[labelled:]])
    return len(ordered)


async def ingest_labels(
    store: FeatureStore, labels: Sequence[tuple[str | int, bool]]
) -> tuple[int, list[str | int]]:
    """(labels accepted, transaction ids the store does not hold)."""
    unknown: list[str | int] = []
    for start in range(0, len(labels), BATCH):
        batch = labels[start : start + BATCH]
        found = await store.label([Label(id_key(i), f) for i, f in batch])
        unknown += [i for (i, _), ok in zip(batch, found, strict=True) if not ok]
    return len(labels) - len(unknown), unknown


def _label(row: HistoryRow) -> Label:
    return Label(id_key(row.transaction_id), row.fraud)
