"""Where capture files and labels come from: a local directory or an S3 prefix.

Capture layout (SageMaker's): ``{root}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl``. A run
lists only the hour directories that overlap its window, so an hourly job on S3 reads one
hour of capture, never the whole history. Without an endpoint name every endpoint under a
local root is read; on S3 the endpoint name is required (listing a bucket's every endpoint
each hour is what the hour prefixes avoid).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from monitor.errors import ConfigError, SourceError


def hour_prefixes(start: dt.datetime, end: dt.datetime) -> list[str]:
    """``yyyy/mm/dd/hh`` of every hour that overlaps ``[start, end)`` (UTC)."""
    hour = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < end:
        out.append(hour.strftime("%Y/%m/%d/%H"))
        hour += dt.timedelta(hours=1)
    return out


def capture_files(
    source: str,
    endpoint: str | None,
    start: dt.datetime,
    end: dt.datetime,
    s3: Any = None,
) -> Iterator[tuple[str, bytes]]:
    """(name, content) of each capture file in the window's hours, oldest hour first."""
    hours = hour_prefixes(start, end)
    if source.startswith("s3://"):
        yield from _s3_capture(source, endpoint, hours, s3)
        return
    root = Path(source)
    if not root.is_dir():
        raise SourceError(f"dataset_source {source} is not a directory")
    endpoints = [root / endpoint] if endpoint else sorted(p for p in root.iterdir() if p.is_dir())
    for hour in hours:
        for endpoint_dir in endpoints:
            for path in sorted(endpoint_dir.glob(f"*/{hour}/*.jsonl")):
                yield str(path), path.read_bytes()


def read_object(uri: str, s3: Any = None) -> bytes:
    """The bytes of a local file or an ``s3://bucket/key`` object."""
    if not uri.startswith("s3://"):
        try:
            return Path(uri).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {uri}: {exc.strerror}") from exc
    bucket, key = _split(uri)
    try:
        return bytes(_client(s3).get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:  # botocore's errors: one boundary
        raise SourceError(f"cannot read {uri}: {exc}") from exc


def recent_reports(uri: str, name: str, limit: int, s3: Any = None) -> list[bytes]:
    """The ``limit`` newest files called ``name`` under a directory or ``s3://`` prefix
    (earlier runs' reports), oldest first."""
    if not uri.startswith("s3://"):
        paths = sorted(Path(uri).rglob(name), key=lambda p: p.stat().st_mtime)[-limit:]
        return [p.read_bytes() for p in paths]
    client = _client(s3)
    bucket, prefix = _split(uri)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        found = [o for page in pages for o in page.get("Contents", [])]
        found = [o for o in found if o["Key"].rsplit("/", 1)[-1] == name]
        found.sort(key=lambda o: o["LastModified"])
        return [
            bytes(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            for o in found[-limit:]
        ]
    except Exception as exc:  # botocore's errors: one boundary
        raise SourceError(f"cannot list or read earlier reports under {uri}: {exc}") from exc


def _s3_capture(
    source: str, endpoint: str | None, hours: list[str], s3: Any
) -> Iterator[tuple[str, bytes]]:
    if not endpoint:
        raise ConfigError("an s3:// dataset_source needs sagemaker_endpoint_name")
    client = _client(s3)
    bucket, prefix = _split(source)
    base = f"{prefix.rstrip('/')}/{endpoint}/" if prefix else f"{endpoint}/"
    try:
        variants = [
            p["Prefix"]
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=base, Delimiter="/"
            )
            for p in page.get("CommonPrefixes", [])
        ]
        for hour in hours:
            for variant in variants:
                pages = client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"{variant}{hour}/"
                )
                for key in sorted(o["Key"] for page in pages for o in page.get("Contents", [])):
                    if key.endswith(".jsonl"):
                        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                        yield f"s3://{bucket}/{key}", body
    except SourceError:
        raise
    except Exception as exc:  # botocore's errors: one boundary
        raise SourceError(f"cannot list or read capture under {source}: {exc}") from exc


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ConfigError(f"{uri} names no bucket")
    return parsed.netloc, parsed.path.lstrip("/")


def _client(s3: Any) -> Any:
    if s3 is not None:
        return s3
    import boto3

    return boto3.client("s3")
