"""``make fuzz``: schemathesis against a real server on the demo package, many cases.

The same run as ``tests/test_contract.py`` (every check on the server's own
``/openapi.json``, plus ``benchmarks.contract_hooks.no_traceback``), longer: the figures go
to RESULTS.md. positive_data_acceptance is left out: JSON Schema cannot say what a valid .npy
body or CSV row is, so a schema-valid string may rightly get 400.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import servers

ROOT = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def fuzz(url: str, examples: int, seed: int, workdir: Path) -> tuple[int, int, str]:
    """schemathesis run on ``url``'s document: (exit status, cases generated, output tail)."""
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all"]
        + ["--exclude-checks", "positive_data_acceptance", "-n", str(examples)]
        + ["--seed", str(seed), "--no-color"],
        cwd=workdir,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "benchmarks.contract_hooks",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=3_600,
    )
    found = re.search(r"(\d+) generated", done.stdout)
    return done.returncode, int(found.group(1)) if found else 0, done.stdout[-4_000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("artifacts/package"))
    parser.add_argument("--examples", type=int, default=8_000, help="per operation")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with servers.running("ours", args.package) as port:
        started = time.monotonic()
        status, generated, output = fuzz(
            f"http://127.0.0.1:{port}", args.examples, args.seed, Path(os.getcwd())
        )
    print(output)
    print(f"fuzz: {generated} cases in {time.monotonic() - started:.0f} s, exit status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
