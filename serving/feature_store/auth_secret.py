"""The Redis store's AUTH token, read once at start from Secrets Manager.

The regional template generates the token in a secret and gives the model only the secret's
ARN (``FRAUD_STORE_AUTH_SECRET_ARN``), never the token: it stays out of the model's
environment, the endpoint's description and CloudFormation's outputs. The secret's
``SecretString`` is the token itself. boto3 is imported here only, when a secret is named:
the embedded store and a Redis store without AUTH run without it. The client finds its
credentials (the endpoint's execution role) and endpoint the usual way; the region is the
secret's own.
"""

from __future__ import annotations

from serving.errors import StoreAuthUnavailable


def read_auth_token(secret_arn: str) -> str:
    """The token held by ``secret_arn``; :class:`StoreAuthUnavailable` naming the secret (never
    its value) when it cannot be read or holds no string."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise StoreAuthUnavailable(
            "FRAUD_STORE_AUTH_SECRET_ARN is set but boto3 is not installed"
        ) from exc
    region = secret_arn.split(":")[3]
    try:
        client = boto3.client("secretsmanager", region_name=region)
        answer = client.get_secret_value(SecretId=secret_arn)
    except (BotoCoreError, ClientError) as exc:
        raise StoreAuthUnavailable(
            f"the feature store's AUTH token {secret_arn}: {type(exc).__name__}: {exc}"
        ) from exc
    token = answer.get("SecretString")
    if not isinstance(token, str) or not token:
        raise StoreAuthUnavailable(f"the secret {secret_arn} holds no SecretString")
    return token
