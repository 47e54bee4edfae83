"""Errors of the serving stage; one handler in ``serving.app`` turns them into responses.

    FraudError (core.errors)
    └── ServingError                 http_status 500 unless overridden
        ├── BadRequest               400  malformed body, wrong feature count, NaN/inf,
        │                                 non-numeric or impossible values, empty body
        │   └── EventTooOld          400  a transaction older than FRAUD_MAX_EVENT_SKEW_S allows
        ├── TransactionConflict      409  a recorded transaction id sent again with other
        │                                 fields (a retry must repeat the transaction exactly)
        ├── PayloadTooLarge          413  body over SAGEMAKER_MAX_PAYLOAD_IN_MB
        ├── UnsupportedMediaType     415  unknown Content-Type
        ├── NotAcceptable            406  unsupported Accept
        ├── NotReady                 503  /ping and /invocations before the model is warm
        ├── Overloaded               503  the batching queue is full
        ├── DeadlineExceeded         503  a request waited past its deadline in the queue
        ├── StoreUnavailable         503  the feature store did not answer (the transaction
        │                                 path answers degraded instead; see serving.transactions)
        ├── TransactionsUnavailable  501  no feature store serves this process (configuration)
        └── StoreAuthUnavailable     500  the Redis store's AUTH token could not be read from
                                          Secrets Manager at start (the model never turns ready)

Messages name the bad input and what was expected; they go to callers as
``{"error": {"code", "message", "request_id"}}`` and never carry a traceback.
"""

from __future__ import annotations

from core.errors import FraudError


class ServingError(FraudError):
    http_status = 500
    code = "internal_error"


class BadRequest(ServingError):
    http_status = 400
    code = "bad_request"


class TransactionConflict(ServingError):
    """``index``: the conflicting transaction's position in the request."""

    http_status = 409
    code = "transaction_conflict"

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class PayloadTooLarge(ServingError):
    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    http_status = 415
    code = "unsupported_media_type"


class NotAcceptable(ServingError):
    http_status = 406
    code = "not_acceptable"


class NotReady(ServingError):
    http_status = 503
    code = "not_ready"


class Overloaded(ServingError):
    http_status = 503
    code = "overloaded"


class DeadlineExceeded(ServingError):
    http_status = 503
    code = "deadline_exceeded"


class EventTooOld(BadRequest):
    code = "event_too_old"


class StoreUnavailable(ServingError):
    http_status = 503
    code = "store_unavailable"


class TransactionsUnavailable(ServingError):
    http_status = 501
    code = "transactions_unavailable"


class StoreAuthUnavailable(ServingError):
    code = "store_auth_unavailable"
