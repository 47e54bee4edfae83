"""The helper payment systems use to call the front door: a score within a deadline, or a
rule-based decision marked as a fallback.

Invariants:
- one call never takes much longer than its deadline: each attempt's socket timeout is the
  time left, and the single retry happens only on a fast failure (connection refused or reset,
  429, 5xx) with at least ``min_retry_s`` left;
- when no score arrives in time the merchant's policy decides: fail-open approves (sending
  amounts at or above ``review_above`` to review), fail-closed declines; the result says
  ``fallback=True`` and why, so the caller can log and reconcile it;
- callers send tokens, never card numbers: the endpoint captures request bodies.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from core.fallback import FallbackPolicy
from deploy.errors import SettingsError

# (method, url, body, headers) -> headers to add, e.g. SigV4 for an IAM-authenticated API
Signer = Callable[[str, str, bytes, Mapping[str, str]], Mapping[str, str]]
RETRYABLE = {429, 500, 502, 503, 504}


@dataclasses.dataclass(frozen=True)
class Decision:
    decision: str
    score: float | None
    fallback: bool
    reason: str  # "scored", or why the fallback decided
    attempts: int


class FraudClient:
    def __init__(
        self,
        url: str,
        deadline_s: float = 0.05,
        policies: Mapping[str, FallbackPolicy] | None = None,
        default_policy: FallbackPolicy | None = None,
        min_retry_s: float = 0.01,
        signer: Signer | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"front door URL {url!r} is not http(s)://host/path")
        if deadline_s <= 0:
            raise SettingsError(f"deadline {deadline_s} s must be positive")
        self.url, self._parts = url, parts
        self.deadline_s, self.min_retry_s = deadline_s, min_retry_s
        self.policies = dict(policies or {})
        self.default_policy = default_policy or FallbackPolicy()
        self.signer = signer

    def _attempt(self, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        p = self._parts
        conn_type = (
            http.client.HTTPSConnection if p.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_type(p.hostname or "", p.port, timeout=timeout_s)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.signer is not None:
            headers |= self.signer("POST", self.url, body, headers)
        try:
            conn.request("POST", p.path or "/", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def score(self, merchant_id: str, features: Sequence[float], amount: float) -> Decision:
        started = time.monotonic()
        body = json.dumps({"instances": [list(features)]}).encode()
        reason, attempts = "", 0
        while attempts < 2:
            left = self.deadline_s - (time.monotonic() - started)
            if left <= 0 or (attempts == 1 and left < self.min_retry_s):
                reason = reason or "deadline"
                break
            attempts += 1
            try:
                status, payload = self._attempt(body, left)
            except TimeoutError:
                reason = f"no answer within {self.deadline_s * 1000:.0f} ms"
                break
            except OSError as exc:  # refused, reset, DNS: fast failures worth one retry
                reason = f"unreachable ({type(exc).__name__})"
                continue
            if status == 200:
                return self._scored(payload, attempts, merchant_id, amount)
            reason = f"HTTP {status}"
            if status not in RETRYABLE:
                break
        policy = self.policies.get(merchant_id, self.default_policy)
        return Decision(policy.decide(amount), None, True, reason or "deadline", attempts)

    def _scored(self, payload: bytes, attempts: int, merchant_id: str, amount: float) -> Decision:
        try:
            prediction = json.loads(payload)["predictions"][0]
            return Decision(
                str(prediction["decision"]), float(prediction["score"]), False, "scored", attempts
            )
        except (ValueError, KeyError, IndexError, TypeError):
            policy = self.policies.get(merchant_id, self.default_policy)
            return Decision(policy.decide(amount), None, True, "unreadable response", attempts)


def sigv4_signer(
    access_key_id: str, secret_access_key: str, session_token: str | None, region: str
) -> Signer:
    """Headers that sign a request for an API Gateway with IAM authorisation."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = Credentials(access_key_id, secret_access_key, session_token)

    def sign(method: str, url: str, body: bytes, headers: Mapping[str, str]) -> Mapping[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
        signed = {"authorization", "x-amz-date", "x-amz-security-token"}
        return {k: v for k, v in request.headers.items() if k.lower() in signed}

    return sign
