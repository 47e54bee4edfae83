"""Incremental feature computation for a stream of transactions with late fraud labels.

Same definitions as ``core.features`` (read its docstring). State per customer: three sliding
windows of (time, cents). State per terminal: events younger than the label delay wait in a
``pending`` queue, then enter the 1/7/30-day windows together and leave them oldest window
first. Every event enters and leaves each window once, so the cost per event is constant and
memory is bounded by 30 days of customer events and 37 days of terminal events, whatever the
length of the history.

Labels may arrive at any time after their transaction. A label that arrives while its event
is inside a terminal window adjusts that window's fraud count at once; the values equal the
offline ones when every label arrives within the delay (what the offline features assume).

Invariant: transactions are fed in non-decreasing event time; an older one raises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from core.errors import OutOfOrderError
from core.features import (
    CUSTOMER_WINDOWS_DAYS,
    LABEL_DELAY_DAYS,
    N_FEATURES,
    SECONDS_PER_DAY,
    TERMINAL_WINDOWS_DAYS,
    calendar_flags,
    mean_amount,
    risk,
)


class _Window:
    """Events in (now - length, upper]; counts and sums kept up to date."""

    __slots__ = ("events", "count", "total")

    def __init__(self) -> None:
        self.events: deque[list[Any]] = deque()
        self.count = 0
        self.total = 0

    def push(self, event: list[Any], value: int) -> None:
        self.events.append(event)
        self.count += 1
        self.total += value

    def evict(self, cutoff_s: int, value_index: int) -> Iterator[list[Any]]:
        """Drop events with time <= cutoff; yield each one dropped."""
        while self.events and self.events[0][0] <= cutoff_s:
            event = self.events.popleft()
            self.count -= 1
            self.total -= event[value_index]
            yield event


class _CustomerState:
    __slots__ = ("windows",)

    def __init__(self) -> None:
        self.windows = [_Window() for _ in CUSTOMER_WINDOWS_DAYS]

    def update(self, time_s: int, cents: int) -> list[float]:
        event = [time_s, cents]
        out: list[float] = []
        for window, n in zip(self.windows, CUSTOMER_WINDOWS_DAYS, strict=True):
            window.push(event, cents)
            for _ in window.evict(time_s - n * SECONDS_PER_DAY, 1):
                pass
            out += [float(window.count), float(mean_amount(window.total, window.count))]
        return out


# terminal event: [time_s, is_fraud, stage]; stage 0 = pending, k >= 1 = inside windows
# k-1 .. end (windows nest, so an event leaves the 1-day window first)
_TIME, _FRAUD, _STAGE = 0, 1, 2


class _TerminalState:
    __slots__ = ("pending", "windows")

    def __init__(self) -> None:
        self.pending: deque[list[Any]] = deque()
        self.windows = [_Window() for _ in TERMINAL_WINDOWS_DAYS]

    def advance(self, now_s: int) -> Iterator[list[Any]]:
        """Move the windows to ``now``; yield events that left every window."""
        delay_s = LABEL_DELAY_DAYS * SECONDS_PER_DAY
        while self.pending and self.pending[0][_TIME] <= now_s - delay_s:
            event = self.pending.popleft()
            event[_STAGE] = 1
            for window in self.windows:
                window.push(event, event[_FRAUD])
        last = len(self.windows) - 1
        for k, (window, n) in enumerate(zip(self.windows, TERMINAL_WINDOWS_DAYS, strict=True)):
            for event in window.evict(now_s - (n + LABEL_DELAY_DAYS) * SECONDS_PER_DAY, _FRAUD):
                event[_STAGE] = k + 2
                if k == last:
                    yield event

    def read(self) -> list[float]:
        out: list[float] = []
        for window in self.windows:
            out += [float(window.count), float(risk(window.total, window.count))]
        return out

    def relabel(self, event: list[Any], is_fraud: int) -> None:
        delta = is_fraud - event[_FRAUD]
        event[_FRAUD] = is_fraud
        if event[_STAGE] >= 1:
            for k in range(event[_STAGE] - 1, len(self.windows)):
                self.windows[k].total += delta


class FeatureUpdater:
    """Stateful per-customer/per-terminal features for transactions in event-time order."""

    def __init__(self) -> None:
        self._customers: dict[object, _CustomerState] = {}
        self._terminals: dict[object, _TerminalState] = {}
        # transaction id -> (terminal state, event) while a label can still change a window
        self._open: dict[object, tuple[_TerminalState, list[Any]]] = {}
        self._last_time_s: int | None = None
        self.labels_ignored = 0

    def update(
        self,
        transaction_id: object,
        time_s: int,
        customer: object,
        terminal: object,
        amount: float,
    ) -> np.ndarray:
        """Features of this transaction (15 float64), then record it in the state."""
        if self._last_time_s is not None and time_s < self._last_time_s:
            raise OutOfOrderError(
                f"transaction {transaction_id} at {time_s}s is older than the last one "
                f"consumed ({self._last_time_s}s); feed transactions in event-time order"
            )
        self._last_time_s = time_s
        cents = int(round(amount * 100))
        weekend, night = calendar_flags(np.array([time_s], dtype=np.int64))

        cust = self._customers.get(customer)
        if cust is None:
            cust = self._customers[customer] = _CustomerState()
        term = self._terminals.get(terminal)
        if term is None:
            term = self._terminals[terminal] = _TerminalState()
        for gone in term.advance(time_s):
            self._open.pop(gone[3], None)

        row = np.empty(N_FEATURES, dtype=np.float64)
        row[0], row[1], row[2] = cents / 100.0, weekend[0], night[0]
        row[3:9] = cust.update(time_s, cents)
        row[9:15] = term.read()

        event: list[Any] = [time_s, 0, 0, transaction_id]
        term.pending.append(event)
        self._open[transaction_id] = (term, event)
        return row

    def add_label(self, transaction_id: object, is_fraud: bool | int) -> None:
        """Record a (late) fraud label; ignored once the transaction left every window."""
        found = self._open.get(transaction_id)
        if found is None:
            self.labels_ignored += 1
            return
        term, event = found
        term.relabel(event, int(bool(is_fraud)))

    def run(self, events: Iterable[tuple[str, tuple[object, ...]]]) -> dict[object, np.ndarray]:
        """Consume ('tx', (id, time_s, customer, terminal, amount)) and ('label', (id, fraud))
        events in order; return the features of every transaction by id."""
        out: dict[object, np.ndarray] = {}
        for kind, payload in events:
            if kind == "tx":
                out[payload[0]] = self.update(*payload)  # type: ignore[arg-type]
            elif kind == "label":
                self.add_label(*payload)  # type: ignore[arg-type]
            else:
                raise ValueError(f"unknown event kind {kind!r}; expected 'tx' or 'label'")
        return out
