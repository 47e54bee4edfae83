"""Open-loop load at a fixed request rate, measured without coordinated omission.

Requests are scheduled at ``start + i / rate`` whatever the server does; each latency runs
from the *scheduled* send time to the last byte of the response, so a slow server cannot hide
queueing by slowing the generator down (wrk's closed loop would): a sender still waiting for
its previous answer sends late, and the lateness counts as latency. Raw HTTP/1.1 keep-alive
sockets, one per sender thread. ``generator_late_p50_us`` reports how late the generator
itself sends when nothing holds it up (its own timing error).

    python -m benchmarks.open_loop --port 8080 --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

import numpy as np


def post_request(
    body: bytes, content_type: str = "application/json", host: str = "127.0.0.1", headers: str = ""
) -> bytes:
    """The bytes of one ``POST /invocations`` carrying ``body``; ``headers``: more header
    lines, each ending in CRLF."""
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one HTTP/1.1 response (Content-Length framed); return its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65_536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    while len(buffer) < end + length:
        chunk = sock.recv(65_536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    del buffer[: end + length]
    return int(head[9:12])


def run(
    host: str,
    port: int,
    rate: float,
    seconds: float,
    body: bytes,
    connections: int = 16,
    content_type: str = "application/json",
    samples: list[float] | None = None,
) -> dict[str, float]:
    """``connections`` sender threads, each with one keep-alive connection, take the
    scheduled slots i = k, k + connections, ...; time.sleep is precise to ~0.1 ms, far finer
    than an event loop's millisecond timers. ``samples``, when given, receives every
    latency in microseconds (for histograms)."""
    payload = post_request(body, content_type, host)
    n = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[list[float]] = [[] for _ in range(connections)]
    lateness: list[list[float]] = [[] for _ in range(connections)]
    statuses: list[dict[int, int]] = [{} for _ in range(connections)]
    errors = [0] * connections

    def sender(k: int) -> None:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for i in range(k, n, connections):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            lateness[k].append(max(0.0, time.perf_counter() - scheduled))
            try:
                sock.sendall(payload)
                status = _read_response(sock, buffer)
            except OSError:
                errors[k] += 1
                sock.close()
                sock = socket.create_connection((host, port))
                buffer.clear()
                continue
            latencies[k].append(time.perf_counter() - scheduled)
            statuses[k][status] = statuses[k].get(status, 0) + 1
        sock.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = np.array([v for part in latencies for v in part]) * 1e6
    late = np.array([v for part in lateness for v in part]) * 1e6
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9]) if len(lat) else (0.0, 0.0, 0.0)
    if samples is not None:
        samples.extend(lat.tolist())
    non_200 = sum(v for part in statuses for code, v in part.items() if code != 200)
    return {
        "rate": rate,
        "sent": n,
        "achieved_rps": len(lat) / elapsed,
        "p50_us": float(p50),
        "p99_us": float(p99),
        "p999_us": float(p999),
        "errors": float(sum(errors)),
        "non_200": float(non_200),
        "generator_late_p50_us": float(np.percentile(late, 50)) if len(late) else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--body", default='{"instances": [[42.5,0,1,2,40.0,9,51.2,40,48.7,3,0.0,20,0.05,90,0.01]]}'
    )
    args = parser.parse_args(argv)
    print(json.dumps(run(args.host, args.port, args.rate, args.seconds, args.body.encode())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
