"""uvicorn, taught to drain: SIGTERM answers every request it can still read, then stops.

Plain uvicorn closes idle keep-alive connections as soon as SIGTERM arrives; a request the
client already sent on such a connection is then reset without an answer. ``DrainingServer``
first stops listening (new connections are refused: never accepted), then keeps the open
connections served while the app answers each new request with 503 and
``Connection: close`` and in-flight ones normally; once nothing has arrived for
``QUIET_S`` (or after ``DRAIN_S``) uvicorn's own shutdown closes what is left and runs the
lifespan shutdown (batcher drain, capture flush).

With several workers, uvicorn's process manager builds one ``Server`` per worker;
:func:`run_workers` has it build ours instead and still replaces any worker that dies.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess

DRAIN_S = 10.0
QUIET_S = 0.3


def _find_app(app: Any) -> Any:
    while app is not None and not hasattr(app, "begin_drain"):
        app = getattr(app, "app", None)
    return app


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        app = _find_app(self.config.loaded_app)
        if app is not None:
            app.begin_drain()
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline and not (
                app.in_flight == 0 and app.idle_for_s() >= QUIET_S
            ):
                await asyncio.sleep(0.02)
        await super().shutdown(sockets=None)


class DrainingProcess(multiprocess.Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def run_single(config: uvicorn.Config) -> None:
    DrainingServer(config).run()


def run_workers(config: uvicorn.Config) -> None:
    # the process manager names its worker class as a module global; point it at ours
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
    sock = config.bind_socket()
    multiprocess.Multiprocess(config, sockets=[sock]).run()
