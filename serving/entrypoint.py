"""The ``serve`` executable SageMaker runs in the container.

The server itself is the subject of the serving issue; until it lands this entry point says
so and exits non-zero, so no one mistakes it for a working server.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("serve: the model server is not built yet (see the serving issue)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
