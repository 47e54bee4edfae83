"""Errors of the deploy stage (CloudFormation, ``fraud deploy``, the payment-system client).

    FraudError (core.errors)
    └── DeployError
        ├── SettingsError          bad input refused before any AWS call (400)
        │   ├── CredentialsMissing no AWS credentials in the environment or a profile
        │   └── PackageMismatch    a package whose checksum differs from its record
        ├── AwsError               a botocore failure, translated at the boundary (502)
        │   ├── PermissionDenied   the caller's role lacks an IAM permission (403)
        │   ├── QuotaExceeded      a service quota or throttling limit (429)
        │   ├── NotFound           an endpoint, job or object that does not exist (404)
        │   └── Conflict           a resource in the wrong state for the request (409)
        ├── AlarmTripped           SageMaker rolled a deployment back on an alarm (409)
        └── WaitTimeout            a wait ran past its timeout (504)

Each error carries ``http_status``; the CLI prints the message and exits 1.
"""

from __future__ import annotations

from core.errors import FraudError


class DeployError(FraudError):
    http_status = 500


class SettingsError(DeployError, ValueError):
    http_status = 400


class CredentialsMissing(SettingsError):
    pass


class PackageMismatch(SettingsError):
    pass


class AwsError(DeployError):
    http_status = 502


class PermissionDenied(AwsError):
    http_status = 403


class QuotaExceeded(AwsError):
    http_status = 429


class NotFound(AwsError):
    http_status = 404


class Conflict(AwsError):
    http_status = 409


class AlarmTripped(DeployError):
    http_status = 409


class WaitTimeout(DeployError):
    http_status = 504
