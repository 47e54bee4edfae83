"""``make loadtest``: our server on the demo package under the Locust load shape.

Starts the server (pinned to core 0, as every benchmark does), runs
``benchmarks/locustfile.py`` headless on core 1 and exits with Locust's status: 0 when the
verdict passed (see the locustfile for what it checks), 1 when it did not, 2 when the run
could not happen (Locust missing, server not starting).

    python -m benchmarks.loadtest [--package artifacts/package] [-- <extra locust options>]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

from benchmarks import servers
from benchmarks.errors import BenchError, ToolMissing

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def run(
    package: Path, extra: list[str], verdict_file: Path | None = None, server: str = "ours"
) -> int:
    if importlib.util.find_spec("locust") is None:
        raise ToolMissing("locust is not installed: `make install` installs it from the lock")
    with servers.running(server, package) as port:
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
        cmd += ["--host", f"http://127.0.0.1:{port}", "--only-summary", "--loglevel", "WARNING"]
        if verdict_file is not None:
            cmd += ["--verdict-file", str(verdict_file)]
        return subprocess.run(servers.pinned([*cmd, *extra], servers.LOAD_CORE)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--verdict-file", type=Path)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    try:
        return run(args.package.resolve(), extra, args.verdict_file)
    except BenchError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return exc.exit_status


if __name__ == "__main__":
    sys.exit(main())
