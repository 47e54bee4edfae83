"""Prometheus metrics of one server process (``GET /metrics``), and optional CloudWatch EMF.

Each worker process keeps its own registry; with several workers a scrape sees the worker
that answered it (the ``pid`` label tells which). Names follow Prometheus conventions.

The hot path records into plain Python numbers (:class:`Counts`, :class:`Buckets`) and a
collector turns them into metric families only when ``/metrics`` is scraped; the text format
is still written by ``prometheus_client``. Why not its ``Counter``/``Histogram``: each
``inc``/``observe`` takes a lock and walks label machinery, about 1 us apiece, and a
single-record request made fifteen of them (see benchmarks/RESULTS.md, "HTTP"). Every
recording happens on the event-loop thread, so plain ``+=`` is safe.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    50e-6,
    100e-6,
    200e-6,
    500e-6,
    1e-3,
    2e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
    250e-3,
    1.0,
    5.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Counts:
    """A counter family: label values (a tuple) -> count."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], n: float = 1) -> None:
        self.values[key] = self.values.get(key, 0) + n

    def family(self) -> Metric:
        f = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items()):
            f.add_metric(list(key), value)
        return f


class Buckets:
    """A histogram without labels: per-bucket counts (le semantics) and the sum."""

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(float(b) for b in bounds)
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError(f"{name}: bucket bounds must ascend, got {bounds}")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound lands in that bound's bucket (le = "<=")
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> Metric:
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(
            self.name, self.documentation, buckets=cumulative, sum_value=self.sum
        )


class ServerMetrics(Collector):
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, feature_names: list[str]) -> None:
        self.requests = Counts(
            "fraud_requests", "HTTP requests by route and status", ["route", "status"]
        )
        self.latency = Buckets(
            "fraud_request_seconds", "Invocation latency, total", LATENCY_BUCKETS
        )
        self.queue_wait = Buckets(
            "fraud_queue_wait_seconds", "Time queued before scoring", LATENCY_BUCKETS
        )
        self.compute = Buckets("fraud_compute_seconds", "Backend time per batch", LATENCY_BUCKETS)
        self.batch_rows = Buckets("fraud_batch_rows", "Rows per backend call", BATCH_BUCKETS)
        self.queue_rows = 0  # rows waiting to be scored, set before each submit
        self.out_of_range = Counts(
            "fraud_out_of_range_values",
            "Feature values outside the training range (scored)",
            ["feature"],
        )
        self.decisions = Counts("fraud_decisions", "Decisions by band", ["decision"])
        self.degraded = Counts(
            "fraud_store_degraded",
            "Transactions decided by the fallback policy: the feature store was down or late",
            ["decision"],
        )
        self.backfilled = Counts(
            "fraud_store_backfilled", "Degraded transactions written into the store later", []
        )
        self.backfill_conflicts = Counts(
            "fraud_store_backfill_conflicts",
            "Degraded transactions not written later: the store holds their id with other fields",
            [],
        )
        self._model: tuple[str, str, str] | None = None
        self._feature_names = feature_names
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def count_out_of_range(self, per_feature: Sequence[int]) -> None:
        for name, n in zip(self._feature_names, per_feature, strict=False):
            if n:
                self.out_of_range.inc((name,), n)

    def set_model(self, model_version: str, thresholds_version: str) -> None:
        self._model = (model_version, thresholds_version, str(os.getpid()))

    def collect(self) -> Iterator[Metric]:
        yield self.requests.family()
        yield self.latency.family()
        yield self.queue_wait.family()
        yield self.compute.family()
        yield self.batch_rows.family()
        yield GaugeMetricFamily("fraud_queue_rows", "Rows waiting to be scored", self.queue_rows)
        yield self.out_of_range.family()
        yield self.decisions.family()
        yield self.degraded.family()
        yield self.backfilled.family()
        yield self.backfill_conflicts.family()
        info = GaugeMetricFamily(
            "fraud_model_info",
            "Loaded model and thresholds versions",
            labels=["model_version", "thresholds_version", "pid"],
        )
        if self._model is not None:
            info.add_metric(list(self._model), 1)
        yield info

    def render(self) -> bytes:
        return generate_latest(self.registry)


def emf_line(namespace: str, dimensions: dict[str, str], values: dict[str, float]) -> str:
    """One CloudWatch Embedded Metric Format record (the CloudWatch agent turns it into
    metrics when the line reaches CloudWatch Logs)."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [
                            {"Name": k, "Unit": "Milliseconds" if k.endswith("_ms") else "None"}
                            for k in values
                        ],
                    }
                ],
            },
            **dimensions,
            **values,
        }
    )
