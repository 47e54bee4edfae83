"""The C flood generator (benchmarks.flood) against real servers on loopback: every scheduled
request comes back once, with the status the server sent, or is reported lost or unanswered."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks import flood, servers
from benchmarks.faults import VALID, Flood
from benchmarks.open_loop import post_request

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None, reason="no C compiler to build benchmarks/flood.c"
)

# (n-th request on its connection, from 1) -> the chunks of the answer, or None: close instead
Answer = Callable[[int], list[bytes] | None]


def _read_request(conn: socket.socket, buffer: bytearray) -> bool:
    """Consume one Content-Length framed request from ``conn``; False when it closed first."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65_536)
        if not chunk:
            return False
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    while len(buffer) < end + length:
        chunk = conn.recv(65_536)
        if not chunk:
            return False
        buffer += chunk
    del buffer[: end + length]
    return True


@contextlib.contextmanager
def _raw_server(answer: Answer) -> Iterator[int]:
    """A keep-alive HTTP/1.1 server on a loopback port, one thread per connection, answering
    each request with ``answer``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)

    def serve(conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            n = 0
            while _read_request(conn, buffer):
                n += 1
                chunks = answer(n)
                if chunks is None:
                    return
                for chunk in chunks:
                    conn.sendall(chunk)
                    time.sleep(0.001)  # each chunk its own segment: the reader sees pieces

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _response(status: int, body: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def test_every_request_on_the_schedule_is_answered_by_the_http_floor() -> None:
    with servers.started("http_floor", Path(".")) as server:
        crowd = Flood(server.port, connections=40)
        samples = crowd.run([(0.5, 200.0), (0.5, 400.0)])
    # 100 at 5 ms apart, then 200 at 2.5 ms apart from 0.5 s
    expected = [k / 200 for k in range(100)] + [0.5 + k / 400 for k in range(200)]
    np.testing.assert_allclose([s.scheduled_s for s in samples], expected, atol=1e-6)
    assert {s.status for s in samples} == {200}
    assert all(s.latency_s > 0 for s in samples)
    assert crowd.summary["connections_warm"] == 40
    assert crowd.summary["answered"] == 300


def test_statuses_are_parsed_from_answers_split_across_reads() -> None:
    sent: list[int] = []
    lock = threading.Lock()

    def answer(n: int) -> list[bytes]:
        with lock:
            status = (200, 503, 404)[len(sent) % 3]
            sent.append(status)
        # every other body is past the generator's first 4 KB buffer
        body = b'{"error": "%d"}' % status + b" " * 6_000 * (len(sent) % 2)
        whole = _response(status, body)
        return [whole[:7], whole[7:30], whole[30:-5], whole[-5:]]

    connections = 6
    with _raw_server(answer) as port:
        # chunks of 4: two warm-up rounds, the second short
        flooded = flood.run(port, post_request(VALID), [(0.6, 100.0)], connections, warm_chunk=4)
    r = flooded.records
    assert len(r) == 60
    # the warm-up round trips come first, then one answer per scheduled request
    assert Counter(r["status"].tolist()) == Counter(sent[connections:])
    assert set(r["status"].tolist()) == {200, 503, 404}
    assert (r["sent_ns"] >= 0).all() and (r["latency_ns"] > r["sent_ns"]).all()
    assert set(r["connection"].tolist()) <= set(range(connections))
    assert flooded.summary["bad_responses"] == 0


def test_requests_finding_no_idle_connection_wait_and_go_in_schedule_order() -> None:
    def answer(n: int) -> list[bytes]:
        time.sleep(0.05)  # two connections carry at most 40 req/s
        return [_response(200, b"ok")]

    with _raw_server(answer) as port:
        flooded = flood.run(port, post_request(VALID), [(0.2, 100.0)], 2)
    r = flooded.records
    assert (r["status"] == 200).all() and len(r) == 20
    sent_at = r["scheduled_ns"] + r["sent_ns"]
    assert (np.diff(sent_at) >= 0).all()  # first due, first sent
    assert (r["latency_ns"] > r["sent_ns"]).all()
    assert set(r["connection"].tolist()) == {0, 1}
    assert 0 < flooded.summary["waited_for_connection"] <= 18  # the first two went at once


def test_requests_on_a_closed_connection_are_reported_lost_or_unanswered() -> None:
    # answers the warm-up round trip, then closes each connection on its next request
    with _raw_server(lambda n: [_response(200, b"ok")] if n == 1 else None) as port:
        flooded = flood.run(port, post_request(VALID), [(0.5, 40.0)], 4, wait_s=2.0)
    r = flooded.records
    assert len(r) == 20
    lost, unsent = r[r["status"] == 0], r[r["status"] != 0]
    # the first four each took a connection and lost it; nothing was left to carry the rest
    assert len(lost) == 4 and sorted(lost["connection"].tolist()) == [0, 1, 2, 3]
    assert (unsent["status"] == -1).all() and (unsent["connection"] == -1).all()
    assert (unsent["sent_ns"] == -1).all()
    assert flooded.summary["lost"] == 4 and flooded.summary["unanswered"] == 16
    assert flooded.summary["connections_lost"] == 4
