"""Server settings: one frozen object, built once in ``main()`` from the environment.

SageMaker's own variables keep their names; ours are prefixed ``FRAUD_``. Nothing else in the
serving package reads the environment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

from core.cpus import cpu_count
from core.errors import FraudError
from core.fallback import FallbackPolicy, parse_policies
from serving.codecs import JSON, RESPONSE_TYPES
from serving.feature_store import AUTH_SECRET_ENV, REDIS_SCHEMES, SECRET_ARN, STORE_ENV

MB = 1024 * 1024


class SettingsError(FraudError, ValueError):
    """An environment variable that does not parse or is out of range."""


@dataclasses.dataclass(frozen=True)
class Settings:
    model_dir: Path = Path("/opt/ml/model")
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    timeout_s: float = 60.0
    default_accept: str = JSON
    max_payload_bytes: int = 6 * MB
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int = 1
    log_level: str = "INFO"
    # micro-batching
    max_batch_size: int = 256
    max_delay_us: int = 500
    max_queue_rows: int = 8_192
    deadline_ms: float = 1_000.0
    shed_wait_ms: float = 20.0
    inline_max_rows: int = 16
    # lanes (serving.lanes): requests over either bound are bulk
    realtime_max_rows: int = 16
    bulk_body_bytes: int = 16 * 1024
    bulk_concurrency: int = 1
    bulk_max_waiting: int = 64
    # one of several workers: load the package before taking connections (serving.server)
    serve_when_ready: bool = False
    # on a GPU: the batch limit grows to the largest bucket whose measured p99 fits this
    score_p99_budget_us: float = 5_000.0
    # data capture (outside SageMaker; SageMaker captures itself from the endpoint config)
    capture_dir: Path | None = None
    capture_percent: float = 0.0
    endpoint_name: str = "local"
    variant_name: str = "AllTraffic"
    identifier_fields: tuple[str, ...] = ()
    hmac_secret: bytes = b""
    emit_emf: bool = False
    # the transaction path (serving.transactions): "embedded" or a redis:// URL
    feature_store: str = "embedded"
    store_path: Path | None = None  # the embedded store's snapshot file
    # where the transactions answered during a store outage are spooled (serving.backlog)
    backlog_dir: Path | None = None
    # a Secrets Manager secret holding the Redis AUTH token, read once at start (never the token)
    store_auth_secret_arn: str = ""
    store_deadline_ms: float = 50.0
    max_event_skew_s: int = 300
    max_clock_ahead_s: float = 300.0
    allow_numeric_ids: bool = False
    # JSON: {"default": {"mode": "open", "review_above": 500}, "<terminal_id>": {...}}
    fallback_policies: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        def get(name: str, parse: type, default: object) -> object:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r} is not a valid {parse.__name__}") from exc

        cpus = cpu_count()
        default_workers = cpus
        if not env.get("SAGEMAKER_MODEL_SERVER_WORKERS") and "workers" not in overrides:
            from optimize.torch_cuda import cuda_available  # imports torch: only when needed

            default_workers = workers_default(cpus, cuda_available())
        capture_dir = env.get("FRAUD_CAPTURE_DIR")
        root = Path(env.get("FRAUD_SAGEMAKER_ROOT", "/opt/ml"))
        store_path = env.get("FRAUD_STORE_PATH", str(root / "feature-store" / "embedded.pickle"))
        backlog_dir = env.get("FRAUD_BACKLOG_DIR", str(root / "feature-store" / "backlog"))
        fields = tuple(
            f.strip() for f in env.get("FRAUD_IDENTIFIER_FIELDS", "").split(",") if f.strip()
        )
        values: dict[str, object] = {
            "model_dir": Path(env.get("FRAUD_MODEL_DIR") or root / "model"),
            "host": env.get("FRAUD_BIND_HOST", "0.0.0.0"),
            "port": get("SAGEMAKER_BIND_TO_PORT", int, 8080),
            "workers": get("SAGEMAKER_MODEL_SERVER_WORKERS", int, default_workers),
            "timeout_s": get("SAGEMAKER_MODEL_SERVER_TIMEOUT", float, 60.0),
            "default_accept": env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON),
            "max_payload_bytes": _megabytes(get("SAGEMAKER_MAX_PAYLOAD_IN_MB", float, 6.0)),
            "batch_strategy": env.get("SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD"),
            "max_concurrent_transforms": get("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", int, 1),
            "log_level": _log_level(env.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "INFO")),
            "max_batch_size": get("FRAUD_MAX_BATCH_SIZE", int, 256),
            "max_delay_us": get("FRAUD_MAX_DELAY_US", int, 500),
            "max_queue_rows": get("FRAUD_MAX_QUEUE_ROWS", int, 8_192),
            "deadline_ms": get("FRAUD_DEADLINE_MS", float, 1_000.0),
            "shed_wait_ms": get("FRAUD_SHED_WAIT_MS", float, 20.0),
            "inline_max_rows": get("FRAUD_INLINE_MAX_ROWS", int, 16),
            "realtime_max_rows": get("FRAUD_REALTIME_MAX_ROWS", int, 16),
            "bulk_body_bytes": get("FRAUD_BULK_BODY_BYTES", int, 16 * 1024),
            "bulk_concurrency": get("FRAUD_BULK_CONCURRENCY", int, 1),
            "bulk_max_waiting": get("FRAUD_BULK_MAX_WAITING", int, 64),
            "score_p99_budget_us": get("FRAUD_SCORE_P99_BUDGET_US", float, 5_000.0),
            "capture_dir": Path(capture_dir) if capture_dir else None,
            "capture_percent": get("FRAUD_CAPTURE_PERCENT", float, 0.0),
            "endpoint_name": env.get("FRAUD_ENDPOINT_NAME", "local"),
            "variant_name": env.get("FRAUD_VARIANT_NAME", "AllTraffic"),
            "identifier_fields": fields,
            "hmac_secret": env.get("FRAUD_HMAC_SECRET", "").encode(),
            "emit_emf": env.get("FRAUD_EMIT_EMF", "") in {"1", "true", "yes"},
            "serve_when_ready": env.get("FRAUD_SERVE_WHEN_READY", "") == "1",
            "feature_store": env.get(STORE_ENV) or "embedded",
            "store_path": Path(store_path) if store_path else None,
            "backlog_dir": Path(backlog_dir) if backlog_dir else None,
            "store_auth_secret_arn": env.get(AUTH_SECRET_ENV, "").strip(),
            "store_deadline_ms": get("FRAUD_STORE_DEADLINE_MS", float, 50.0),
            "max_event_skew_s": get("FRAUD_MAX_EVENT_SKEW_S", int, 300),
            "max_clock_ahead_s": get("FRAUD_MAX_CLOCK_AHEAD_S", float, 300.0),
            "allow_numeric_ids": env.get("FRAUD_ALLOW_NUMERIC_IDS", "") in {"1", "true", "yes"},
            "fallback_policies": env.get("FRAUD_FALLBACK_POLICIES", ""),
        }
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        checks = {
            "port": 0 <= self.port < 65_536,
            "workers": self.workers >= 1,
            "timeout_s": self.timeout_s > 0,
            "max_payload_bytes": self.max_payload_bytes > 0,
            "max_batch_size": self.max_batch_size >= 1,
            "score_p99_budget_us": self.score_p99_budget_us > 0,
            "max_delay_us": self.max_delay_us >= 0,
            "max_queue_rows": self.max_queue_rows >= 1,
            "deadline_ms": self.deadline_ms > 0,
            "shed_wait_ms": self.shed_wait_ms > 0,
            "realtime_max_rows": self.realtime_max_rows >= 1,
            "bulk_body_bytes": self.bulk_body_bytes >= 1,
            "bulk_concurrency": self.bulk_concurrency >= 1,
            "bulk_max_waiting": self.bulk_max_waiting >= 0,
            "capture_percent": 0.0 <= self.capture_percent <= 100.0,
            "batch_strategy": self.batch_strategy in {"MULTI_RECORD", "SINGLE_RECORD"},
            "store_deadline_ms": self.store_deadline_ms > 0,
            "max_event_skew_s": 0 <= self.max_event_skew_s <= 86_400,
            "max_clock_ahead_s": 0 <= self.max_clock_ahead_s <= 1e11,
            "feature_store": self.feature_store == "embedded"
            or self.feature_store.startswith(REDIS_SCHEMES),
            "store_auth_secret_arn": self.store_auth_secret_arn == ""
            or re.fullmatch(SECRET_ARN, self.store_auth_secret_arn) is not None,
        }
        # an unsupported default would turn every request without Accept into an error
        checks["default_accept"] = self.default_accept in RESPONSE_TYPES
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise SettingsError(f"out of range: { ({n: getattr(self, n) for n in bad}) }")
        self.policies()  # raises naming what is wrong
        if self.store_auth_secret_arn and self.feature_store == "embedded":
            raise SettingsError(
                "FRAUD_STORE_AUTH_SECRET_ARN is the Redis store's AUTH token: it needs "
                "FRAUD_FEATURE_STORE=redis://... or rediss://..."
            )
        if self.identifier_fields and not self.hmac_secret:
            raise SettingsError(
                "FRAUD_IDENTIFIER_FIELDS needs FRAUD_HMAC_SECRET: identifiers "
                "are replaced by a keyed hash, never a plain one"
            )

    def policies(self) -> dict[str, FallbackPolicy]:
        """FRAUD_FALLBACK_POLICIES parsed: per terminal (merchant) id, and ``default``."""
        if not self.fallback_policies:
            return {}
        try:
            doc = json.loads(self.fallback_policies)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return parse_policies(doc)
        except ValueError as exc:
            raise SettingsError(f"FRAUD_FALLBACK_POLICIES: {exc}") from exc


def workers_default(cpus: int, gpu: bool) -> int:
    """On a GPU one process owns the device and its batcher; on CPUs one worker per core."""
    return 1 if gpu else cpus


def _megabytes(value: object) -> int:
    mb = float(value)  # type: ignore[arg-type]
    if not math.isfinite(mb) or mb <= 0:
        raise SettingsError(f"SAGEMAKER_MAX_PAYLOAD_IN_MB={value!r} must be a positive number")
    return int(mb * MB)


def _log_level(raw: str) -> str:
    # SageMaker passes numeric levels (e.g. "20"); accept names too
    names = {"10": "DEBUG", "20": "INFO", "30": "WARNING", "40": "ERROR", "50": "CRITICAL"}
    level = names.get(raw.strip(), raw.strip().upper())
    if level not in names.values():
        raise SettingsError(f"SAGEMAKER_CONTAINER_LOG_LEVEL={raw!r} is not a log level")
    return level
