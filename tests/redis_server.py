"""A real ``redis-server`` on a free loopback port, for the Redis store's tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from benchmarks import servers


class RedisServer:
    def __init__(
        self,
        workdir: Path,
        persistent: bool = False,
        password: str = "",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is missing: `make tools` installs it"
        self.workdir = workdir
        # persistent: every write appended and synced, so a SIGKILL loses nothing
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else []
        # requirepass: every client must AUTH first (the URL carries no password)
        self.password = password
        self.extra_args = list(extra_args)  # e.g. a unix socket or a TLS port
        self.port = servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same port)."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(self.persistence or ["--appendonly", "no"]),
                "--dir",
                str(self.workdir),
                *(["--requirepass", self.password] if self.password else []),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    # up and answering: PONG, or a refusal until the client authenticates
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
