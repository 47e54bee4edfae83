"""schemathesis hooks for the HTTP contract runs: a check that no response leaks a traceback."""

from __future__ import annotations

from typing import Any

import schemathesis

LEAKS = ("Traceback (most recent call last)", 'File "/', "Error: ")


@schemathesis.check
def no_traceback(ctx: Any, response: Any, case: Any) -> bool | None:
    text = response.text or ""
    leaked = [marker for marker in LEAKS[:2] if marker in text]
    if leaked:
        raise AssertionError(f"the response carries a traceback: {text[:300]!r}")
    return None
