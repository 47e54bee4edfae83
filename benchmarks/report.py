"""What every benchmark records beside its figures: the machine, and a timestamped file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name and architecture, e.g. 'AMD EPYC (x86_64)'."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({platform.machine()})"


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def save(result: dict[str, object], out_dir: Path, prefix: str) -> Path:
    """Write ``<out_dir>/<prefix>-<UTC timestamp>.json`` (no prefix: ``<timestamp>.json``)
    and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / (f"{prefix}-{stamp}.json" if prefix else f"{stamp}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
