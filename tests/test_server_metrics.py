"""The server's hot-path metrics render what prometheus_client's own types would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import LATENCY_BUCKETS, ServerMetrics


def _samples(text: str, family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if not s.name.endswith("_created")
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([*LATENCY_BUCKETS, 0.0, 7.0, 3e-5, 2.5e-3]), max_size=30))
def test_latency_histogram_matches_prometheus_client_for_the_same_observations(
    values: list[float],
) -> None:
    ours = ServerMetrics(["amount"])
    registry = CollectorRegistry()
    reference = Histogram("fraud_request_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry)
    for v in values:  # bounds themselves included: "le" means a bound's own value counts in
        ours.latency.observe(v)
        reference.observe(v)
    want = _samples(generate_latest(registry).decode(), "fraud_request_seconds")
    got = _samples(ours.render().decode(), "fraud_request_seconds")
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-12 * max(1.0, abs(value)), key


def test_counters_gauges_and_model_info_render_with_their_labels() -> None:
    m = ServerMetrics(["amount", "is_night"])
    m.requests.inc(("/invocations", "200"))
    m.requests.inc(("/invocations", "200"))
    m.requests.inc(("/invocations", "400"))
    m.count_out_of_range([0, 3])
    m.decisions.inc(("decline",))
    m.queue_rows = 7
    m.set_model("abc", "t1")
    text = m.render().decode()
    assert (
        _samples(text, "fraud_requests")[
            ("fraud_requests_total", (("route", "/invocations"), ("status", "200")))
        ]
        == 2
    )
    assert 'fraud_out_of_range_values_total{feature="is_night"} 3.0' in text
    assert "amount" not in text.split("fraud_out_of_range_values_total")[-1].split("#")[0]
    assert 'fraud_decisions_total{decision="decline"} 1.0' in text
    assert "fraud_queue_rows 7.0" in text
    assert 'model_version="abc"' in text and 'thresholds_version="t1"' in text
