"""The servers a benchmark runs side by side, each started pinned to its own core.

``ours`` is the real ``serve`` entrypoint on a model package; ``http_floor`` the minimal raw
ASGI app on the same uvicorn stack; ``naive`` FastAPI + PyTorch eager scoring each request
alone; ``ours_slowed`` is ours with a busy-wait added to every request (the regression the
gate must catch; see ``benchmarks.slow_server``); ``ours_shedding`` is ours held in overload
(every real-time request refused; ``benchmarks.shedding_server``); ``ours_redis_floor`` is
ours with a Redis record script that does no Redis work (``benchmarks.redis_floor_server``).
Load generators run on another core.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from benchmarks.errors import ServerFailed

SERVER_CORE = 0
LOAD_CORE = 1
SERVERS = ("ours", "http_floor", "naive", "ours_slowed", "ours_shedding", "ours_redis_floor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], core: int) -> list[str]:
    """``cmd`` under ``taskset -c core`` where the machine has that core and taskset.

    The machine's cores, not this process's affinity: a runner that pins itself to the load
    core must still start servers on the server core (sharing one core hides the cross-core
    wake-up every real request pays: the HTTP floor's c1 p50 drops from ~90 to ~50 us)."""
    cores = os.cpu_count() or 1
    if shutil.which("taskset") and core < cores and cores > 1:
        return ["taskset", "-c", str(core), *cmd]
    return cmd


def command(
    name: str, package: Path, port: int, slow_us: int = 0
) -> tuple[list[str], dict[str, str]]:
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    uvicorn += ["--no-access-log", "--http", "httptools", "--loop", "uvloop"]
    ours_env = {
        "FRAUD_MODEL_DIR": str(package),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "FRAUD_BIND_HOST": "127.0.0.1",
        # the per-decision audit log is measured separately (RESULTS.md, "HTTP")
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "WARNING",
    }
    if name == "ours":
        return [py, "-m", "serving.entrypoint"], ours_env
    if name == "ours_slowed":
        return [py, "-m", "benchmarks.slow_server"], {**ours_env, "BENCH_SLOW_US": str(slow_us)}
    if name == "ours_shedding":
        return [py, "-m", "benchmarks.shedding_server"], ours_env
    if name == "ours_redis_floor":
        return [py, "-m", "benchmarks.redis_floor_server"], ours_env
    if name == "http_floor":
        return [*uvicorn, "benchmarks.floor_app:app"], {}
    if name == "naive":
        return [*uvicorn, "--factory", "benchmarks.naive_server:create_app"], {
            "FRAUD_MODEL_DIR": str(package)
        }
    raise ValueError(f"unknown server {name!r}; expected one of {SERVERS}")


@dataclasses.dataclass(frozen=True)
class Started:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # the server's stdout and stderr


@contextlib.contextmanager
def started(
    name: str,
    package: Path,
    slow_us: int = 0,
    start_timeout_s: float = 120.0,
    extra_env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Started]:
    """Start server ``name`` on a free port, wait for ``/ping`` 200, yield it, stop it.
    Its output goes to a temporary file, or to ``log_dir/<name>.log`` (kept) when given."""
    port = free_port()
    cmd, env = command(name, package, port, slow_us)
    env = {**env, **(extra_env or {})}
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log: IO[str] = stack.enter_context(
                tempfile.NamedTemporaryFile("w+", suffix=f"-{name}.log")
            )
        else:
            log = stack.enter_context(open(log_dir / f"{name}.log", "w+"))
        proc = subprocess.Popen(
            pinned(cmd, SERVER_CORE),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(name, proc, port, Path(log.name), start_timeout_s)
            yield Started(port, proc, Path(log.name))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def running(name: str, package: Path, **options: Any) -> Iterator[int]:
    """:func:`started`, yielding only the port."""
    with started(name, package, **options) as server:
        yield server.port


def wait_healthy(
    name: str, proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float
) -> float:
    """Seconds until ``/ping`` answered 200; ServerFailed if the server exits, refuses its
    package or stays unhealthy for ``timeout_s``."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(
                f"server {name!r} exited with status {proc.returncode} before /ping was "
                f"healthy; last log lines:\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except urllib.error.HTTPError as exc:
            # ours answers 503 while loading, and 503 with the reason once it refused the
            # package: waiting longer would not help
            reason = exc.read().decode(errors="replace")
            if exc.code != 503 or "still loading" not in reason:
                raise ServerFailed(
                    f"server {name!r} will not become healthy: /ping {exc.code} {reason}"
                ) from exc
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    raise ServerFailed(
        f"server {name!r} not healthy within {timeout_s:.0f} s; last log lines:\n{_tail(log)}"
    )


def _tail(log: Path, chars: int = 2_000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
