"""The AWS boundary: clients built from :class:`~deploy.config.AwsSettings`, and the one
place botocore errors become ours.

Every AWS request of the deploy package goes through :func:`call`, which maps botocore's
error codes to the :mod:`deploy.errors` tree with a message naming the action; and every wait
goes through :func:`wait_until`, which has a timeout.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from deploy.config import AwsSettings
from deploy.errors import (
    AwsError,
    Conflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    WaitTimeout,
)

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 4, "mode": "standard"}
)

_PERMISSION = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_QUOTA = {
    "ResourceLimitExceeded",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ServiceQuotaExceededException",
}
_NOT_FOUND = {
    "ResourceNotFound",
    "ResourceNotFoundException",
    "ValidationException.NotFound",
    "NoSuchBucket",
    "NoSuchKey",
    "404",
    "NotFound",
    "NoSuchHostedZone",
    "ObjectNotFoundException",
}
_CONFLICT = {"ResourceInUse", "ConflictException", "ResourceInUseException"}


def session(settings: AwsSettings) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        aws_session_token=settings.session_token,
        profile_name=settings.profile,
        region_name=settings.region,
    )


def client(settings: AwsSettings, service: str, shared: boto3.session.Session | None = None) -> Any:
    """A client of ``service``; pass ``shared`` to reuse one session's loaded data."""
    chosen = shared or session(settings)
    return chosen.client(service, endpoint_url=settings.endpoint_url, config=CLIENT_CONFIG)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_not_found(code: str, message: str) -> bool:
    # SageMaker reports a missing endpoint as ValidationException "Could not find endpoint"
    return code in _NOT_FOUND or (
        code == "ValidationException" and message.lower().startswith("could not find")
    )


def translate(exc: ClientError | BotoCoreError, action: str) -> AwsError:
    if not isinstance(exc, ClientError):
        return AwsError(f"{action}: {exc}")
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    if code in _PERMISSION:
        return PermissionDenied(f"{action}: missing IAM permission ({code}: {message})")
    if code in _QUOTA:
        return QuotaExceeded(
            f"{action}: service quota or rate limit ({code}: {message}); "
            "request a quota increase or retry later"
        )
    if _is_not_found(code, message):
        return NotFound(f"{action}: not found ({code}: {message})")
    if code in _CONFLICT:
        return Conflict(f"{action}: resource busy or in the wrong state ({code}: {message})")
    return AwsError(f"{action}: {code}: {message}")


def call(action: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)`` with botocore errors translated; ``action`` names it in messages."""
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, action) from exc


def find(action: str, fn: Callable[..., Any], **kwargs: Any) -> Any | None:
    """Like :func:`call`, but a missing resource is ``None`` instead of an error."""
    try:
        return call(action, fn, **kwargs)
    except NotFound:
        return None


def wait_until(
    what: str,
    poll: Callable[[], str],
    done: set[str],
    timeout_s: float,
    interval_s: float = 15.0,
) -> str:
    """Poll until ``poll()`` returns a state in ``done``; raise WaitTimeout past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = poll()
        if state in done:
            return state
        if time.monotonic() + interval_s > deadline:
            raise WaitTimeout(f"{what}: still {state} after {timeout_s:.0f} s")
        time.sleep(interval_s)


@dataclasses.dataclass(frozen=True)
class Clients:
    """The clients one region's deployment uses."""

    sagemaker: Any
    s3: Any
    cloudwatch: Any
    sns: Any
    autoscaling: Any
    ec2: Any

    @classmethod
    def connect(cls, settings: AwsSettings) -> Clients:
        shared = session(settings)
        return cls(
            sagemaker=client(settings, "sagemaker", shared),
            s3=client(settings, "s3", shared),
            cloudwatch=client(settings, "cloudwatch", shared),
            sns=client(settings, "sns", shared),
            autoscaling=client(settings, "application-autoscaling", shared),
            ec2=client(settings, "ec2", shared),
        )


def submit_and_follow(
    action: str,
    describe: Callable[[], Any],
    create: Callable[[], Any],
    status_key: str,
    done: set[str],
    timeout_s: float,
    interval_s: float,
) -> dict[str, Any]:
    """Create a SageMaker job unless ``describe`` finds it, then poll it to a state in
    ``done``; its last description. ``describe`` raises NotFound for a missing job."""
    try:
        describe()
    except NotFound:
        create()
    wait_until(action, lambda: str(describe()[status_key]), done, timeout_s, interval_s)
    return dict(describe())
