"""Our server held in overload: its micro-batcher always reports itself full or behind, so
every real-time ``POST /invocations`` gets 503 Overloaded while ``/ping`` and the other
routes answer as usual. What a refusal costs (``benchmarks.faults refusal``) and how a
refused request behaves on the wire (tests/test_server.py) are measured on it. One worker
(the override lives in this process).

    FRAUD_MODEL_DIR=artifacts/package python -m benchmarks.shedding_server
"""

from __future__ import annotations

import os
import sys

from serving import app, entrypoint
from serving.batcher import MicroBatcher


class FullBatcher(MicroBatcher):
    @property
    def full(self) -> bool:
        return True


def main() -> int:
    app.MicroBatcher = FullBatcher  # type: ignore[misc]  # FraudApp builds app.MicroBatcher
    return entrypoint.run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
