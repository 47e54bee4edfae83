"""The feature windows, defined once: per-entity event state, its reads, and the 15-value row.

Every path that computes features goes through this module or derives from its constants:
the offline table (``core.features.compute_features`` replays a frame through
:class:`CustomerWindows` and :class:`TerminalWindows`), the embedded online store (the same
classes, one per entity) and the Redis store (a Lua script whose constants are formatted from
the ones below and whose aggregates are turned into features by :func:`feature_row`).

Definitions (``t`` an event time in whole seconds, ``d`` the label delay):

- customer, window ``w``: the events with time in (t - w, t] whose (time, id key) is at most
  the event's own; the count and the sum of amounts in integer cents.
- terminal, window ``w``: the events with time in (t - d - w, t - d], whatever their id; the
  count and the number labelled fraud. An event's own terminal entry never counts (d > 0).
- a label counts for every read at or after its transaction's time plus ``d``.

Reads return integer aggregates only (counts, cent sums, fraud counts); :func:`feature_row`
turns them into the model's floats, so every store rounds the same way. Ties between events
at the same second are broken by :func:`id_key`, which orders integer ids numerically and
string ids by code point, as the offline sort does.

Pure Python (``bisect`` over sorted arrays): nothing here imports numpy or pandas, so the
server's transaction path stays free of them. Times and amounts are packed in ``array('q')``
(8 bytes a value, where a list held an int object and a tuple per event): the online store
keeps a month of every customer's and terminal's events in memory.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort

from core.feature_names import CUSTOMER_WINDOWS_DAYS, TERMINAL_WINDOWS_DAYS

DAY_S = 86_400
LABEL_DELAY_DAYS = 7
LABEL_DELAY_S = LABEL_DELAY_DAYS * DAY_S
CUSTOMER_WINDOWS_S = tuple(n * DAY_S for n in CUSTOMER_WINDOWS_DAYS)
TERMINAL_WINDOWS_S = tuple(n * DAY_S for n in TERMINAL_WINDOWS_DAYS)
# how far back an entity's events can still be read, from the latest event it saw
CUSTOMER_RETENTION_S = max(CUSTOMER_WINDOWS_S)
TERMINAL_RETENTION_S = max(TERMINAL_WINDOWS_S) + LABEL_DELAY_S
# integer ids sort before string ids; padded so the string order is the numeric order
_INT_KEY_DIGITS = 20
MAX_INT_ID = 10**_INT_KEY_DIGITS - 1

# (count_1d, cents_1d, count_7d, cents_7d, count_30d, cents_30d)
CustomerAggregates = tuple[int, ...]
# (count_1d, frauds_1d, count_7d, frauds_7d, count_30d, frauds_30d)
TerminalAggregates = tuple[int, ...]
# a customer's aggregates then its terminal's: what a store answers for a transaction
Aggregates = tuple[int, ...]
# night: hours 0-6 of the UTC day
_NIGHT_END_S = 7 * 3600


def id_key(transaction_id: str | int) -> str:
    """The tie-break key of a transaction id: integers numerically, strings by code point."""
    if isinstance(transaction_id, int):
        return f"0{transaction_id:0{_INT_KEY_DIGITS}d}"
    return "1" + transaction_id


def to_cents(amount: float) -> int:
    """An amount in currency units -> integer cents (the unit every window sum uses)."""
    return round(amount * 100)


class CustomerWindows:
    """One customer's events sorted by (time, id key): the times, the id keys (the same string
    objects the store keys its records by, so not copied) and running cent totals.

    ``totals[i]`` is the sum of the cents of every event before index ``i`` since the
    customer's first (``totals`` holds one value more than ``times``), so a window's sum is
    two lookups, not a scan of the month: reading 60 events' cents one by one cost more than
    the rest of the read."""

    __slots__ = ("times", "keys", "totals")

    def __init__(self) -> None:
        self.times = array("q")
        self.keys: list[str] = []
        self.totals = array("q", (0,))

    def _after(self, time_s: int, key: str) -> int:
        """The index after every event whose (time, id key) is at most (time_s, key)."""
        times = self.times
        n = len(times)
        if not n or times[-1] < time_s:  # the usual case: the latest event so far
            return n
        hi = bisect_right(times, time_s)
        # the events at time_s are [lo, hi), sorted by id key among themselves
        return bisect_right(self.keys, key, bisect_left(times, time_s, 0, hi), hi)

    def add(self, time_s: int, key: str, cents: int) -> int:
        """Insert the event; the index after it (where :meth:`read` for it ends)."""
        times, totals = self.times, self.totals
        at = self._after(time_s, key)
        if at == len(times):
            times.append(time_s)
            self.keys.append(key)
            totals.append(totals[-1] + cents)
            return at + 1
        times.insert(at, time_s)
        self.keys.insert(at, key)
        totals.insert(at + 1, totals[at] + cents)
        for i in range(at + 2, len(totals)):  # out of order: the later events' totals move
            totals[i] += cents
        return at + 1

    def read(self, time_s: int, key: str) -> CustomerAggregates:
        return self.read_to(time_s, self._after(time_s, key))

    def add_and_read(self, time_s: int, key: str, cents: int) -> CustomerAggregates:
        """:meth:`add` then :meth:`read` for a new event, with one search."""
        return self.read_to(time_s, self.add(time_s, key, cents))

    def read_to(self, time_s: int, hi: int) -> CustomerAggregates:
        """The aggregates as of ``time_s`` over the events before index ``hi``."""
        times, totals = self.times, self.totals
        w1, w7, w30 = CUSTOMER_WINDOWS_S
        # time > t - w; the windows nest, so each bound is searched below the shorter one's
        lo1 = bisect_left(times, time_s - w1 + 1, 0, hi)
        lo7 = bisect_left(times, time_s - w7 + 1, 0, lo1)
        lo30 = bisect_left(times, time_s - w30 + 1, 0, lo7)
        top = totals[hi]
        return (
            hi - lo1,
            top - totals[lo1],
            hi - lo7,
            top - totals[lo7],
            hi - lo30,
            top - totals[lo30],
        )

    def prune(self, before_s: int) -> None:
        """Forget events with time < before_s."""
        cut = bisect_left(self.times, before_s)
        if cut:  # totals keeps its value at ``cut``: the sum before the first event kept
            del self.times[:cut], self.keys[:cut], self.totals[:cut]


class TerminalWindows:
    """One terminal's event times, and the times of those labelled fraud (both sorted)."""

    __slots__ = ("times", "fraud_times")

    def __init__(self) -> None:
        self.times = array("q")
        self.fraud_times = array("q")

    def add(self, time_s: int) -> None:
        times = self.times
        if not times or times[-1] <= time_s:
            times.append(time_s)
        else:
            insort(times, time_s)

    def label(self, time_s: int, fraud: bool) -> None:
        """Mark one event at ``time_s`` fraud (or undo that); the caller tracks transitions."""
        if fraud:
            insort(self.fraud_times, time_s)
        else:
            at = bisect_left(self.fraud_times, time_s)
            if at < len(self.fraud_times) and self.fraud_times[at] == time_s:
                del self.fraud_times[at]

    def read(self, time_s: int) -> TerminalAggregates:
        times, frauds = self.times, self.fraud_times
        top = time_s - LABEL_DELAY_S  # time <= t - d
        hi = bisect_right(times, top)
        w1, w7, w30 = TERMINAL_WINDOWS_S
        # time > t - d - w
        if not frauds:  # most terminals: no fraud labelled in their windows
            return (
                hi - bisect_right(times, top - w1, 0, hi),
                0,
                hi - bisect_right(times, top - w7, 0, hi),
                0,
                hi - bisect_right(times, top - w30, 0, hi),
                0,
            )
        fhi = bisect_right(frauds, top)
        return (
            hi - bisect_right(times, top - w1, 0, hi),
            fhi - bisect_right(frauds, top - w1, 0, fhi),
            hi - bisect_right(times, top - w7, 0, hi),
            fhi - bisect_right(frauds, top - w7, 0, fhi),
            hi - bisect_right(times, top - w30, 0, hi),
            fhi - bisect_right(frauds, top - w30, 0, fhi),
        )

    def prune(self, before_s: int) -> None:
        cut = bisect_left(self.times, before_s)
        if cut:
            del self.times[:cut]
        cut = bisect_left(self.fraud_times, before_s)
        if cut:
            del self.fraud_times[:cut]


def feature_row(time_s: int, cents: int, aggregates: Aggregates) -> list[float]:
    """The 15 features (``core.feature_names`` order) from one event's aggregates, the
    customer's then the terminal's as a store answers them: the amount; is_weekend and
    is_night (0/1, from the UTC time: 1970-01-01 was a Thursday, night is hours 0-6); per
    window the count and the mean amount (currency units) or the fraud share, 0 for an empty
    window. Written out without helper calls: the transaction path builds one per request."""
    c1, s1, c7, s7, c30, s30, n1, f1, n7, f7, n30, f30 = aggregates
    return [
        cents / 100.0,
        1.0 if (time_s // DAY_S + 3) % 7 >= 5 else 0.0,
        1.0 if time_s % DAY_S < _NIGHT_END_S else 0.0,
        float(c1),
        s1 / (c1 * 100.0) if c1 else 0.0,
        float(c7),
        s7 / (c7 * 100.0) if c7 else 0.0,
        float(c30),
        s30 / (c30 * 100.0) if c30 else 0.0,
        float(n1),
        f1 / n1 if n1 else 0.0,
        float(n7),
        f7 / n7 if n7 else 0.0,
        float(n30),
        f30 / n30 if n30 else 0.0,
    ]
