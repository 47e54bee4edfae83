"""Settings from the environment: SageMaker's names honoured, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import MB, Settings, SettingsError


def test_sagemaker_variables_are_honoured() -> None:
    s = Settings.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
            "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "FRAUD_SAGEMAKER_ROOT": "/x",
        }
    )
    assert (s.port, s.workers, s.timeout_s) == (9090, 3, 30.0)
    assert s.max_payload_bytes == 2 * MB and s.default_accept == "text/csv"
    assert s.batch_strategy == "SINGLE_RECORD" and s.log_level == "INFO"
    assert s.model_dir == Path("/x/model")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SAGEMAKER_BIND_TO_PORT": "http"}, "SAGEMAKER_BIND_TO_PORT='http' is not a valid int"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "nan"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "inf"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
        ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/x-npy"}, "default_accept"),
        ({"SAGEMAKER_CONTAINER_LOG_LEVEL": "LOUD"}, "not a log level"),
        ({"FRAUD_CAPTURE_PERCENT": "150"}, "capture_percent"),
        ({"FRAUD_IDENTIFIER_FIELDS": "card_token"}, "FRAUD_HMAC_SECRET"),
        ({"FRAUD_FEATURE_STORE": "memcached://x"}, "feature_store"),
        ({"FRAUD_MAX_EVENT_SKEW_S": "-1"}, "max_event_skew_s"),
        ({"FRAUD_STORE_DEADLINE_MS": "0"}, "store_deadline_ms"),
        ({"FRAUD_FALLBACK_POLICIES": "[1]"}, "FRAUD_FALLBACK_POLICIES"),
        ({"FRAUD_FALLBACK_POLICIES": '{"m-1": {"mode": "maybe"}}'}, "'maybe'"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env(env)


def test_transaction_settings_are_read() -> None:
    s = Settings.from_env(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            "FRAUD_SAGEMAKER_ROOT": "/x",
            "FRAUD_FEATURE_STORE": "redis://cache:6379/0",
            "FRAUD_MAX_EVENT_SKEW_S": "60",
            "FRAUD_STORE_DEADLINE_MS": "20",
            "FRAUD_ALLOW_NUMERIC_IDS": "1",
            "FRAUD_FALLBACK_POLICIES": '{"default": {"mode": "closed"}, "7": {"review_above": 50}}',
        }
    )
    assert (s.feature_store, s.max_event_skew_s, s.store_deadline_ms) == (
        "redis://cache:6379/0",
        60,
        20.0,
    )
    assert s.allow_numeric_ids and s.store_path == Path("/x/feature-store/embedded.pickle")
    policies = s.policies()
    assert policies["default"].decide(1.0) == "decline" and policies["7"].decide(60.0) == "review"
