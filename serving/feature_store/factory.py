"""The store the settings name: ``embedded`` (default) or a ``redis://`` URL, with the AUTH
token read from Secrets Manager when ``FRAUD_STORE_AUTH_SECRET_ARN`` names one."""

from __future__ import annotations

from serving.feature_store.base import FeatureStore
from serving.settings import Settings


def open_store(settings: Settings) -> FeatureStore | None:
    """The configured store; None when none can serve this process (the embedded store
    with several workers: each would see part of a card's traffic)."""
    if settings.feature_store == "embedded":
        if settings.workers > 1:
            return None
        from serving.feature_store.embedded import EmbeddedStore

        return EmbeddedStore.open(settings.max_event_skew_s, settings.store_path)
    from serving.feature_store.redis_store import RedisStore

    password = None
    if settings.store_auth_secret_arn:
        from serving.feature_store.auth_secret import read_auth_token

        password = read_auth_token(settings.store_auth_secret_arn)
    return RedisStore(
        settings.feature_store,
        settings.max_event_skew_s,
        settings.store_deadline_ms / 1e3,
        password=password,
    )
