"""uvicorn, taught to drain: SIGTERM answers every request it can still read, then stops.

Plain uvicorn closes idle keep-alive connections as soon as SIGTERM arrives; a request the
client already sent on such a connection is then reset without an answer. ``DrainingServer``
first stops listening (new connections are refused: never accepted), then keeps the open
connections served while the app answers each new request with 503 and
``Connection: close`` and in-flight ones normally; once nothing has arrived for
``QUIET_S`` (or after ``DRAIN_S``) uvicorn's own shutdown closes what is left and runs the
lifespan shutdown (batcher drain, capture flush).

With several workers, :func:`run_workers` is a small supervisor over uvicorn's public API
(``Config.bind_socket``, ``Server.run(sockets=...)``): the parent binds the socket once and
starts one spawned process per worker, each running a ``DrainingServer`` on that socket. A
worker that dies is replaced (the parent waits on the processes' sentinels). Each worker
loads its package before it takes connections from the shared socket: a replacement's first
requests would otherwise get 503 while the other workers could answer them, and at start a
request that arrives before any worker is ready waits in the socket's backlog instead of
getting 503 from a worker still loading (the kernel accepts the connection meanwhile, so
connection checks pass at once). SIGTERM or
SIGINT to the parent is passed to every worker, which drains as above, and the parent exits
once they have, killing any still alive after ``GRACEFUL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import wait
from typing import Any

import uvicorn

DRAIN_S = 10.0
QUIET_S = 0.3
GRACEFUL_S = 25.0  # SIGTERM to SIGKILL is 30 s on SageMaker: the workers' drain fits inside

SERVE_WHEN_READY = "FRAUD_SERVE_WHEN_READY"

log = logging.getLogger("fraud.serving.server")


def find_app(app: Any) -> Any:
    """Our app under the middleware uvicorn wraps around it (the object with
    ``begin_drain``), or None for another app."""
    while app is not None and not hasattr(app, "begin_drain"):
        app = getattr(app, "app", None)
    return app


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        app = find_app(self.config.loaded_app)
        if app is not None:
            app.begin_drain()
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline and not (
                app.in_flight == 0 and app.idle_for_s() >= QUIET_S
            ):
                await asyncio.sleep(0.02)
        await super().shutdown(sockets=None)


def run_single(config: uvicorn.Config) -> None:
    DrainingServer(config).run()


def _worker(config: uvicorn.Config, sock: socket.socket) -> None:
    os.environ[SERVE_WHEN_READY] = "1"  # read by Settings.from_env, in this process only
    DrainingServer(config).run(sockets=[sock])


def run_workers(config: uvicorn.Config, workers: int) -> None:
    """``workers`` processes serving one socket; dead ones replaced until SIGTERM/SIGINT."""
    sock = config.bind_socket()
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> Any:
        proc = spawn.Process(target=_worker, args=(config, sock), daemon=False)
        proc.start()
        return proc

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    procs = [start() for _ in range(workers)]
    while not stopping.is_set():
        wait([p.sentinel for p in procs], timeout=0.5)
        for i, proc in enumerate(procs):
            if not proc.is_alive() and not stopping.is_set():
                log.warning(
                    "worker died; starting a replacement",
                    extra={"fields": {"pid": proc.pid, "exitcode": proc.exitcode}},
                )
                procs[i] = start()
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: each worker drains
    deadline = time.monotonic() + GRACEFUL_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
    sock.close()
