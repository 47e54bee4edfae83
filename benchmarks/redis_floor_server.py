"""Our server with the Redis store's record script replaced by one that does no Redis work:
it answers every transaction the same packed aggregates, so a request still sends its keys
and arguments, waits for one reply and unpacks it. What the Redis transaction path then
costs over the vector path is the round trip and the transaction path's own work: the
reference ``benchmarks.transaction_bench`` reads the Redis c=1 gap against (the real
script's share is the difference). Never a store: nothing is recorded.

    FRAUD_FEATURE_STORE=redis://... FRAUD_MODEL_DIR=artifacts/package \\
        python -m benchmarks.redis_floor_server
"""

from __future__ import annotations

import os
import sys

from serving import entrypoint
from serving.feature_store import redis_scripts, redis_store

# the reply the record script gives: status, detail, a replayed flag per transaction, the
# packed aggregates per transaction
CONSTANT = """
local a = struct.pack('__AGGREGATES__', 1, 100, 1, 100, 1, 100, 0, 0, 0, 0, 0, 0)
local n = (#ARGV - 4) / __ARGS_PER_TRANSACTION__
local out, flags = {}, {}
for i = 1, n do
  out[i], flags[i] = a, '0'
end
return {'ok', '', table.concat(flags), out}
"""


def main() -> int:
    redis_store.record_script = lambda: redis_scripts.formatted(CONSTANT)
    return entrypoint.run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
