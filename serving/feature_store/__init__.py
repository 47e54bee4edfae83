"""Online feature stores for the transaction path (design: DESIGN.md beside this file).

The environment variables that choose the store, named once: the server's settings read
them, ``fraud deploy apply`` (``deploy.requests.model_request``) sets them on the model, and
a test holds the regional template's model to the same names.
"""

STORE_ENV = "FRAUD_FEATURE_STORE"  # "embedded" (default) or a redis:// / rediss:// URL
AUTH_SECRET_ENV = "FRAUD_STORE_AUTH_SECRET_ARN"  # the secret holding the Redis AUTH token
SECRET_ARN = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[\w/+=.@-]+"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
