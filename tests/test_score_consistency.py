"""A transaction's score does not depend on the batch it is scored in (real server, loopback).

The same rows are scored alone, inside requests padded to every bucket size, and as lone
requests sent together so that the micro-batcher coalesces them: every score must stay within
the package's tolerance of the row's lone score, and decisions may differ only for rows that
sit within that tolerance of a threshold (counted, and expected to be none).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimize.precision import SCORE_TOLERANCE
from optimize.selection import BATCH_SIZES
from tests.test_server import Server, _opt_ml


@pytest.fixture(scope="module")
def coalescing_server(
    small_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, object]]]:
    root = _opt_ml(tmp_path_factory.mktemp("opt_ml"), small_package)
    # a 20 ms batching window: lone requests sent together share a batch
    srv = Server(root, {"FRAUD_MAX_DELAY_US": "20000", "FRAUD_INLINE_MAX_ROWS": "0"})
    srv.wait_healthy()
    manifest = json.loads((small_package / "manifest.json").read_text())
    thresholds = json.loads((small_package / "thresholds.json").read_text())
    yield srv, {"features": manifest["features"], "bands": thresholds["bands"]}
    srv.stop()


def _rows(features: list[dict[str, object]]) -> st.SearchStrategy[list[list[float]]]:
    """1-6 plausible rows: each feature inside its training range, counts and flags whole."""
    columns = []
    for f in features:
        lo, hi = float(f["min"]), float(f["max"])  # type: ignore[arg-type]
        name = str(f["name"])
        if name.startswith("is_") or "_count_" in name:
            columns.append(st.integers(int(lo), int(hi)).map(float))
        else:
            columns.append(st.floats(lo, hi, allow_nan=False, width=32))
    return st.lists(st.tuples(*columns).map(list), min_size=1, max_size=6)


def _scores(client: httpx.Client, url: str, rows: list[list[float]]) -> list[dict[str, object]]:
    r = client.post(
        url + "/invocations",
        content=json.dumps({"instances": rows}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["precision"] == "fp32"
    return list(r.json()["predictions"])


def _coalesced(url: str, rows: list[list[float]]) -> list[dict[str, object]]:
    """Each row as its own request, all sent at once from their own threads."""
    out: list[dict[str, object]] = [{} for _ in rows]
    start = threading.Barrier(len(rows))

    def send(i: int) -> None:
        with httpx.Client(timeout=10) as c:
            start.wait()
            out[i] = _scores(c, url, [rows[i]])[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_the_same_row_gets_the_same_score_alone_in_every_bucket_and_coalesced(
    coalescing_server: tuple[Server, dict[str, object]],
) -> None:
    srv, package = coalescing_server
    bands = package["bands"]
    near_threshold = 0

    @settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rows=_rows(package["features"]))  # type: ignore[arg-type]
    def check(rows: list[list[float]]) -> None:
        nonlocal near_threshold
        with httpx.Client(timeout=30) as c:
            alone = [_scores(c, srv.url, [row])[0] for row in rows]
            runs = [_coalesced(srv.url, rows)]
            for size in BATCH_SIZES:  # the rows first, then filler rows up to the bucket size
                filler = [rows[i % len(rows)] for i in range(max(size - len(rows), 0))]
                runs.append(_scores(c, srv.url, rows + filler)[: len(rows)])
        lone = np.array([p["score"] for p in alone])
        for run in runs:
            got = np.array([p["score"] for p in run])
            assert np.abs(got - lone).max() <= SCORE_TOLERANCE
            for a, b, s in zip(alone, run, lone, strict=True):
                if a["decision"] != b["decision"]:
                    edge = min(abs(s - float(v)) for v in bands.values())  # type: ignore[union-attr]
                    assert edge <= SCORE_TOLERANCE, (a, b)
                    near_threshold += 1

    check()
    assert near_threshold == 0
