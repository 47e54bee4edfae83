"""The ``serve`` executable (what SageMaker runs) and ``fraud serve``.

Settings are read from the environment once, here (``Settings.from_env``). With one worker
the app runs in this process; with several, ``serving.server.run_workers`` starts them,
replaces any that dies, and each worker builds its app through :func:`create_app` (which
reads the same environment, passed down by the parent). SIGTERM: see ``serving.server`` (stop
listening, answer what is still read, then uvicorn's shutdown within ``GRACEFUL_S``, well
inside SageMaker's 30 s; the lifespan shutdown drains the batcher and flushes captured data).
HTTP is uvicorn's httptools protocol with admission added (``serving.admission``: under
overload, ``POST /invocations`` gets its 503 before uvicorn builds the request).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GRACEFUL_S = 20


def create_app() -> object:
    from serving import logs
    from serving.app import FraudApp
    from serving.settings import Settings

    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level)
    return FraudApp(settings)


def run(
    env: Mapping[str, str],
    model_dir: Path | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> int:
    import uvicorn

    from serving import logs
    from serving.admission import AdmissionProtocol
    from serving.app import FraudApp
    from serving.server import run_single, run_workers
    from serving.settings import Settings, SettingsError

    overrides: dict[str, object] = {}
    if model_dir is not None:
        overrides["model_dir"] = model_dir
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    try:
        settings = Settings.from_env(env, **overrides)
    except SettingsError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 1
    logs.configure(settings.log_level)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",
        "http": AdmissionProtocol,  # httptools, refusing under overload before the ASGI call
        "loop": "uvloop",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": GRACEFUL_S,
        "timeout_keep_alive": 75,
    }
    if settings.workers == 1:
        run_single(uvicorn.Config(FraudApp(settings), **common))
        return 0
    # worker processes rebuild the settings from the environment: hand them the overrides
    os.environ.update(
        {
            "SAGEMAKER_BIND_TO_PORT": str(settings.port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(settings.workers),
            "FRAUD_MODEL_DIR": str(settings.model_dir),
        }
    )
    config = uvicorn.Config(
        "serving.entrypoint:create_app", factory=True, workers=settings.workers, **common
    )
    run_workers(config, settings.workers)
    return 0


def main() -> int:
    return run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
