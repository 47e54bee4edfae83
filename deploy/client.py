"""The client payment systems use to call the front door: a score within a deadline from the
first region that answers, or a rule-based decision marked as a fallback.

Invariants:
- each region is called at its own front door name and signed for that region (SigV4 binds
  the signature to the region, so a request signed for one region is refused by the other);
- one pool of keep-alive connections per region: a call reuses a warm TLS connection
  instead of paying a handshake, and a connection that failed is closed, never reused;
- the first attempt gets at most ``first_attempt_share`` (60 %) of the deadline, so a region
  that hangs leaves the next one time to answer; every later attempt but the last gets the
  same share of what is left, the last gets all of it;
- a 5xx, a throttle (429), a timeout or a connection failure moves the call to the next
  region and marks the failed one down for ``cooldown_s``; regions marked down are tried
  last, and the first success clears the mark, so traffic returns once the region is healthy;
- any other 4xx is the request's fault: no other region is tried;
- a score from another region than the home one (the first listed) is marked ``degraded``:
  the online feature state is per region, so the merchant's policy says whether such a
  score stands (``degraded="score"``) or its rule decides (``degraded="rule"``);
- only when every region failed (or the deadline ran out) the merchant's policy decides:
  fail-open approves (amounts at or above ``review_above`` go to review), fail-closed
  declines; the result says ``fallback=True`` and why, so the caller can log and reconcile;
- callers send tokens, never card numbers: the endpoint captures request bodies.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from core.fallback import FallbackPolicy
from deploy.errors import SettingsError

# (region, method, url, body, headers) -> headers to add, e.g. SigV4 for an IAM-authenticated API
Signer = Callable[[str, str, str, bytes, Mapping[str, str]], Mapping[str, str]]
FAILOVER_STATUS = {429, 500, 502, 503, 504}
FIRST_ATTEMPT_SHARE = 0.6
# a kept-alive connection the server already closed fails before any byte of the answer
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclasses.dataclass(frozen=True)
class Region:
    """One region's front door: the AWS region (the SigV4 signing region) and its URL."""

    name: str
    url: str

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"front door URL {self.url!r} is not http(s)://host/path")


@dataclasses.dataclass(frozen=True)
class Decision:
    decision: str
    score: float | None
    fallback: bool
    reason: str  # "scored", or why the fallback decided
    attempts: int
    region: str | None = None  # the region that scored
    trail: tuple[str, ...] = ()  # "region: outcome" per attempt, in order
    degraded: bool = False  # scored outside the home region (its feature state is not there)


class _Pool:
    """Idle keep-alive connections to one host; a connection is used by one call at a time."""

    def __init__(self, url: str, max_idle: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.path = parts.path or "/"
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self.fresh(timeout_s), False
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn, True

    def fresh(self, timeout_s: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout_s)

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _exchange(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes]:
    """One request on ``conn``; a connection that failed is closed, never reused."""
    try:
        conn.request("POST", path, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.read()
    except BaseException:
        conn.close()
        raise


class FraudClient:
    def __init__(
        self,
        regions: Sequence[Region],
        deadline_s: float = 0.05,
        policies: Mapping[str, FallbackPolicy] | None = None,
        default_policy: FallbackPolicy | None = None,
        signer: Signer | None = None,
        first_attempt_share: float = FIRST_ATTEMPT_SHARE,
        cooldown_s: float = 30.0,
        min_attempt_s: float = 0.002,
        max_idle_per_region: int = 8,
    ) -> None:
        if not regions:
            raise SettingsError("the client needs at least one region")
        if len({r.name for r in regions}) != len(regions):
            raise SettingsError(f"regions listed twice in {[r.name for r in regions]}")
        if deadline_s <= 0:
            raise SettingsError(f"deadline {deadline_s} s must be positive")
        if not 0 < first_attempt_share <= FIRST_ATTEMPT_SHARE:
            raise SettingsError(
                f"first attempt share {first_attempt_share} is outside (0, {FIRST_ATTEMPT_SHARE}]"
            )
        self.regions = tuple(regions)
        self.deadline_s, self.first_attempt_share = deadline_s, first_attempt_share
        self.cooldown_s, self.min_attempt_s = cooldown_s, min_attempt_s
        self.policies = dict(policies or {})
        self.default_policy = default_policy or FallbackPolicy()
        self.signer = signer
        self._pools = {r.name: _Pool(r.url, max_idle_per_region) for r in self.regions}
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def __enter__(self) -> FraudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def order(self) -> list[Region]:
        """Regions in preference order, those marked down last (still tried as a last resort)."""
        now = time.monotonic()
        with self._lock:
            down = {name for name, until in self._down_until.items() if until > now}
        return [r for r in self.regions if r.name not in down] + [
            r for r in self.regions if r.name in down
        ]

    def _mark(self, region: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._down_until.pop(region, None)
            else:
                self._down_until[region] = time.monotonic() + self.cooldown_s

    def _send(self, region: Region, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        pool = self._pools[region.name]
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.signer is not None:
            headers |= self.signer(region.name, "POST", region.url, body, headers)
        started = time.monotonic()
        conn, reused = pool.take(timeout_s)
        try:
            answer = _exchange(conn, pool.path, body, headers)
        except _STALE:
            left = timeout_s - (time.monotonic() - started)
            if not reused or left <= 0:
                raise
            conn = pool.fresh(left)
            answer = _exchange(conn, pool.path, body, headers)
        pool.give_back(conn)
        return answer

    def _budget(self, left_s: float, is_last: bool, is_first: bool) -> float:
        if is_last:
            return left_s
        if is_first:
            return min(left_s, self.first_attempt_share * self.deadline_s)
        return self.first_attempt_share * left_s

    def score(self, merchant_id: str, features: Sequence[float], amount: float) -> Decision:
        started = time.monotonic()
        body = json.dumps({"instances": [list(features)]}).encode()
        order = self.order()
        trail: list[str] = []
        reason = "deadline"
        for i, region in enumerate(order):
            left = self.deadline_s - (time.monotonic() - started)
            if left < self.min_attempt_s:
                reason = f"deadline ({self.deadline_s * 1000:.0f} ms) spent"
                break
            budget = self._budget(left, i == len(order) - 1, i == 0)
            try:
                status, payload = self._send(region, body, budget)
            except TimeoutError:
                outcome = f"no answer within {budget * 1000:.0f} ms"
            except OSError as exc:  # refused, reset, DNS
                outcome = f"unreachable ({type(exc).__name__})"
            else:
                if status == 200:
                    self._mark(region.name, ok=True)
                    trail.append(f"{region.name}: scored")
                    return self._scored(payload, merchant_id, amount, region.name, trail)
                outcome = f"HTTP {status}"
                if status not in FAILOVER_STATUS:
                    trail.append(f"{region.name}: {outcome}")
                    reason = outcome
                    break
            self._mark(region.name, ok=False)
            trail.append(f"{region.name}: {outcome}")
            reason = "every region failed: " + "; ".join(trail)
        return self._fallback(merchant_id, amount, reason, trail)

    def _fallback(self, merchant_id: str, amount: float, reason: str, trail: list[str]) -> Decision:
        policy = self.policies.get(merchant_id, self.default_policy)
        return Decision(policy.decide(amount), None, True, reason, len(trail), None, tuple(trail))

    def _scored(
        self, payload: bytes, merchant_id: str, amount: float, region: str, trail: list[str]
    ) -> Decision:
        try:
            prediction = json.loads(payload)["predictions"][0]
            decision, score = str(prediction["decision"]), float(prediction["score"])
        except (ValueError, KeyError, IndexError, TypeError):
            return self._fallback(merchant_id, amount, "unreadable response", trail)
        degraded = region != self.regions[0].name
        policy = self.policies.get(merchant_id, self.default_policy)
        if degraded and policy.degraded == "rule":
            reason = f"degraded: scored in {region}, away from the home region's feature state"
            return Decision(
                policy.decide(amount), score, True, reason, len(trail), region, tuple(trail), True
            )
        return Decision(
            decision, score, False, "scored", len(trail), region, tuple(trail), degraded
        )


def sigv4_signer(access_key_id: str, secret_access_key: str, session_token: str | None) -> Signer:
    """Headers that sign a request for the API Gateway of the region it is sent to."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = Credentials(access_key_id, secret_access_key, session_token)
    signed = {"authorization", "x-amz-date", "x-amz-security-token"}

    def sign(
        region: str, method: str, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
        return {k: v for k, v in request.headers.items() if k.lower() in signed}

    return sign
