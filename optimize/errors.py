"""Errors of the optimize stage (export, variants, backends, the model package).

    FraudError (core.errors)
    └── OptimizeError
        ├── ExportError           the network cannot be exported or fails fp32 parity
        ├── RuntimeUnavailable    a backend's runtime (onnxruntime-gpu, tensorrt) is absent
        └── PackageError          a model package that must not be served
            ├── MissingFileError  a required file is absent
            └── ChecksumError     a file's SHA-256 differs from the manifest

A server maps PackageError to "never healthy"; the CLI prints the message and exits 1.
"""

from __future__ import annotations

from core.errors import FraudError


class OptimizeError(FraudError):
    http_status = 500


class ExportError(OptimizeError):
    pass


class RuntimeUnavailable(OptimizeError):
    http_status = 503


class PackageError(OptimizeError):
    http_status = 503


class MissingFileError(PackageError):
    pass


class ChecksumError(PackageError):
    pass
