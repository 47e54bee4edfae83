"""Prometheus metrics of one server process (``GET /metrics``), and optional CloudWatch EMF.

Each worker process keeps its own registry; with several workers a scrape sees the worker
that answered it (the ``pid`` label tells which). Names follow Prometheus conventions.
"""

from __future__ import annotations

import json
import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, feature_names: list[str]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fraud_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "fraud_request_seconds",
            "Invocation latency, total",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "fraud_queue_wait_seconds",
            "Time queued before scoring",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute = Histogram(
            "fraud_compute_seconds", "Backend time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_rows = Histogram(
            "fraud_batch_rows", "Rows per backend call", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("fraud_queue_rows", "Rows waiting to be scored", registry=r)
        self.out_of_range = Counter(
            "fraud_out_of_range_values",
            "Feature values outside the training range (scored)",
            ["feature"],
            registry=r,
        )
        self.decisions = Counter("fraud_decisions", "Decisions by band", ["decision"], registry=r)
        self.model_info = Gauge(
            "fraud_model_info",
            "Loaded model and thresholds versions",
            ["model_version", "thresholds_version", "pid"],
            registry=r,
        )
        self._feature_names = feature_names

    def count_out_of_range(self, per_feature: list[int]) -> None:
        for name, n in zip(self._feature_names, per_feature, strict=False):
            if n:
                self.out_of_range.labels(name).inc(n)

    def set_model(self, model_version: str, thresholds_version: str) -> None:
        self.model_info.labels(model_version, thresholds_version, str(os.getpid())).set(1)

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
