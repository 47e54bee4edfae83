"""Our server with a known slowdown: every scoring call also spins ``BENCH_SLOW_US``
microseconds on the CPU. The gate must catch this; ``benchmarks.gate --slow-us`` and the
gate's tests use it to show how large a slowdown the gate reliably sees.

    BENCH_SLOW_US=50 FRAUD_MODEL_DIR=artifacts/package python -m benchmarks.slow_server
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from serving import app, entrypoint


class SlowedApp(app.FraudApp):
    slow_s = 0.0

    def _score(self, x: np.ndarray) -> np.ndarray:
        # spin rather than sleep: a regression costs CPU, and sleep would yield the core
        end = time.perf_counter() + self.slow_s
        while time.perf_counter() < end:
            pass
        return super()._score(x)


def main() -> int:
    SlowedApp.slow_s = int(os.environ.get("BENCH_SLOW_US", "0")) / 1e6
    app.FraudApp = SlowedApp  # type: ignore[misc]  # entrypoint.run builds app.FraudApp
    return entrypoint.run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
