"""``fraud deploy package``: check ``model.tar.gz`` against its manifest, upload it, record it.

Invariants:
- the tarball is checked before any AWS call: it holds ``manifest.json`` and every file the
  manifest lists, each with the SHA-256 the manifest records;
- the upload carries the tarball's own SHA-256 as object metadata, and the local record
  (``<tarball>.deploy.json``) carries the same digest; ``apply`` refuses a tarball whose
  digest differs from its record before calling AWS, and an S3 object whose metadata differs;
- uploading the same tarball twice is a no-op (the key holds the model version).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from deploy.aws import call, find
from deploy.errors import PackageMismatch, SettingsError

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class PackageRecord:
    """What was uploaded, where, and its digest."""

    bucket: str
    key: str
    sha256: str
    model_version: str

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> PackageRecord:
        try:
            raw = json.loads(path.read_text())
            return cls(**{f.name: str(raw[f.name]) for f in dataclasses.fields(cls)})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SettingsError(
                f"{path} is not a package record from `fraud deploy package`"
            ) from exc


def record_path(tarball: Path) -> Path:
    return tarball.with_name(f"{tarball.name}.deploy.json")


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_tarball(tarball: Path) -> str:
    """Return the model version after checking every member against the manifest."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            if MANIFEST not in members:
                raise PackageMismatch(f"{tarball} holds no {MANIFEST}: not a model package")
            manifest: dict[str, Any] = json.load(tar.extractfile(members[MANIFEST]))  # type: ignore[arg-type]
            for name, digest in manifest.get("files", {}).items():
                if name not in members:
                    raise PackageMismatch(f"{tarball}: {name} is in {MANIFEST} but not packed")
                data = tar.extractfile(members[name]).read()  # type: ignore[union-attr]
                if hashlib.sha256(data).hexdigest() != digest:
                    raise PackageMismatch(
                        f"{tarball}: {name} does not match its SHA-256 in {MANIFEST}"
                    )
    except (OSError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise PackageMismatch(f"{tarball} is not a readable model.tar.gz: {exc}") from exc
    if not manifest.get("files") or not manifest.get("model_version"):
        raise PackageMismatch(f"{tarball}: {MANIFEST} lists no files or no model_version")
    return str(manifest["model_version"])


def check_against_record(tarball: Path, record: PackageRecord) -> None:
    """Refuse, before any AWS call, a tarball that is not the one recorded as uploaded."""
    digest = file_sha256(tarball)
    if digest != record.sha256:
        raise PackageMismatch(
            f"{tarball} has SHA-256 {digest[:16]}..., but {record.s3_uri} was uploaded with "
            f"{record.sha256[:16]}...: rerun `fraud deploy package`"
        )


def upload(s3: Any, tarball: Path, bucket: str, prefix: str, kms_key: str | None) -> PackageRecord:
    model_version = check_tarball(tarball)
    digest = file_sha256(tarball)
    key = f"{prefix.strip('/')}/{model_version}/model.tar.gz".lstrip("/")
    record = PackageRecord(bucket=bucket, key=key, sha256=digest, model_version=model_version)
    head = find(f"read s3://{bucket}/{key}", s3.head_object, Bucket=bucket, Key=key)
    if head is not None and head.get("Metadata", {}).get("sha256") == digest:
        return record
    extra: dict[str, Any] = {"Metadata": {"sha256": digest, "model-version": model_version}}
    if kms_key:
        extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key}
    with tarball.open("rb") as body:
        call(f"upload {record.s3_uri}", s3.put_object, Bucket=bucket, Key=key, Body=body, **extra)
    return record


def check_uploaded(s3: Any, record: PackageRecord) -> None:
    head = call(f"read {record.s3_uri}", s3.head_object, Bucket=record.bucket, Key=record.key)
    uploaded = head.get("Metadata", {}).get("sha256")
    if uploaded != record.sha256:
        raise PackageMismatch(
            f"{record.s3_uri} carries SHA-256 {uploaded!r}, the record says {record.sha256!r}: "
            "the object was replaced after packaging"
        )
