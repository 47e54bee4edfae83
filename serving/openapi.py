"""The HTTP contract as an OpenAPI 3.1 document, served at ``GET /openapi.json``.

Built once per loaded package (the feature names, their possible values and the response
fields come from the same rules the server applies: ``serving.validation`` for values,
``serving.codecs`` for content types), rendered to bytes and served from memory, off the
request path. ``make test`` runs schemathesis against a live server with this document:
every response must match it, and no request may get a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.windows import MAX_INT_ID
from serving import codecs
from serving.transaction_requests import MAX_AMOUNT, MAX_EPOCH_S, MAX_ID_CHARS
from serving.validation import FLOAT32_MAX, feature_rule

ERROR_STATUSES = {
    "400": "malformed body, wrong feature count, NaN/inf, impossible values, empty body",
    "406": "no supported type in Accept",
    "409": "a transaction_id already recorded (or sent earlier in the request) with another "
    "customer_id, terminal_id, amount or timestamp; nothing of the request is recorded",
    "413": "body over SAGEMAKER_MAX_PAYLOAD_IN_MB",
    "415": "unsupported Content-Type",
    "501": "transactions with the embedded store and several workers (use Redis)",
    "503": "not ready, shutting down, queue full or behind (its oldest request waited over "
    "FRAUD_SHED_WAIT_MS), bulk lane full (requests over 16 rows or 16 KiB), past the deadline, "
    "or labels while the feature store is down: retry",
}
# no control characters (C0, DEL, C1): part of the server's rule, str.isprintable(), which
# also refuses format, private-use, unassigned and separator code points
PRINTABLE = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
# the years of 0 <= epoch seconds < 1e11 (a zone offset can still push the first or last
# hours of the range out: those get 400 too)
YEARS_1970_TO_5137 = "^(19[7-9][0-9]|[2-4][0-9]{3}|50[0-9]{2}|51[0-2][0-9]|513[0-7])-"
OPERATION_ID = "invocations"
# Links from a 200 on /invocations back to /invocations: what a client does next with a
# scored transaction. schemathesis' stateful phase follows them: the link's body (runtime
# expressions inside a JSON body) is merged into a generated one (``x-schemathesis``'s
# ``merge_body: false`` would send it alone, but schemathesis 4 cannot then choose among
# several request media types). An expression that does not resolve (a feature-vector
# response has no transaction_id) leaves the link unused for that response.
LINKS = {
    "LabelTheScoredTransaction": {
        "operationId": OPERATION_ID,
        "description": "a fraud label for the first scored transaction: accepted, not unknown",
        "requestBody": {
            "labels": [
                {"transaction_id": "$response.body#/predictions/0/transaction_id", "fraud": True}
            ]
        },
    },
    "ReplayTheTransactions": {
        "operationId": OPERATION_ID,
        "description": "the same transactions again: each answered with replayed: true",
        "requestBody": {"transactions": "$request.body#/transactions"},
    },
}
SAGEMAKER_HEADERS = {
    "X-Amzn-SageMaker-Custom-Attributes": "opaque; echoed on the response",
    "X-Amzn-SageMaker-Inference-Id": "becomes the request id of logs, capture and errors",
    "X-Amzn-SageMaker-Target-Variant": "set by SageMaker; ignored",
}


def _value_schema(name: str) -> dict[str, Any]:
    """The possible values of one feature; an unbounded side is left open (the server refuses
    what float32 cannot hold as non-finite, a 400)."""
    low, high, whole, _ = feature_rule(name)
    schema: dict[str, Any] = {"type": "integer" if whole else "number"}
    if low > -FLOAT32_MAX:
        schema["minimum"] = low
    if high < FLOAT32_MAX:
        schema["maximum"] = high
    return schema


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            }
        },
    }


def _prediction_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["score", "decision", "out_of_range"],
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "decision": {"enum": ["approve", "review", "decline"]},
            "out_of_range": {
                "type": "boolean",
                "description": "a value outside the training range: scored, only counted",
            },
        },
        "additionalProperties": True,  # a named-field row's other fields are echoed
    }


def _components(names: Sequence[str]) -> dict[str, Any]:
    values = [_value_schema(n) for n in names]
    row = {
        "type": "array",
        "prefixItems": values,
        "items": False,
        "minItems": len(names),
        "maxItems": len(names),
        "description": f"the {len(names)} features in order: {', '.join(names)}",
    }
    named = {
        "type": "object",
        "required": list(names),
        "properties": dict(zip(names, values, strict=True)),
        "description": "named features; other fields are echoed on the prediction",
    }
    return {
        "Row": row,
        "NamedRow": named,
        "Instances": {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"oneOf": [{"$ref": "#/components/schemas/Row"}, named]},
                }
            },
        },
        "Prediction": _prediction_schema(),
        "Predictions": {
            "type": "object",
            "required": ["predictions", "model_version", "thresholds_version", "precision"],
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Prediction"},
                },
                "model_version": {"type": "string"},
                "thresholds_version": {"type": "string"},
                "precision": {"enum": ["fp32", "fp16", "int8_static"]},
            },
        },
        "Error": _error_schema(),
        **_transaction_components(names),
    }


def _transaction_components(names: Sequence[str]) -> dict[str, Any]:
    token = {
        "anyOf": [
            {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ID_CHARS,
                "pattern": PRINTABLE,
            },
            {"type": "integer", "minimum": 0, "maximum": MAX_INT_ID},
        ],
        "description": "an opaque token; 13-19 digits passing Luhn (a card number?) get 400 "
        "unless FRAUD_ALLOW_NUMERIC_IDS=1",
    }
    transaction = {
        "type": "object",
        "required": ["transaction_id", "customer_id", "terminal_id", "amount", "timestamp"],
        "properties": {
            "transaction_id": token,
            "customer_id": token,
            "terminal_id": token,
            "amount": {"type": "number", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT},
            "timestamp": {
                "anyOf": [
                    {"type": "string", "format": "date-time", "pattern": YEARS_1970_TO_5137},
                    {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_EPOCH_S},
                ],
                "description": "ISO 8601 with a zone, or epoch seconds, both from the epoch "
                "to 1e11 s (the year 5138); an event older than "
                "the windows serve (FRAUD_MAX_EVENT_SKEW_S behind the newest) gets 400",
            },
        },
    }
    scored = {
        "type": "object",
        "required": ["transaction_id", "score", "decision", "replayed"],
        "properties": {
            "transaction_id": token,
            "score": {
                "type": ["number", "null"],
                "description": "null when degraded: the fallback policy decided",
            },
            "decision": {"enum": ["approve", "review", "decline"]},
            "replayed": {"type": "boolean", "description": "a retry of a transaction id"},
            "degraded": {"type": "boolean"},
            "features": {
                "type": "object",
                "required": list(names),
                "properties": {n: {"type": "number"} for n in names},
            },
        },
    }
    return {
        "Transactions": {
            "type": "object",
            "required": ["transactions"],
            "properties": {
                "transactions": {"type": "array", "minItems": 1, "items": transaction},
                "return_features": {"type": "boolean"},
            },
        },
        "Labels": {
            "type": "object",
            "required": ["labels"],
            "properties": {
                "labels": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["transaction_id", "fraud"],
                        "properties": {"transaction_id": token, "fraud": {"type": "boolean"}},
                    },
                }
            },
        },
        "TransactionPredictions": {
            "type": "object",
            "required": ["predictions", "model_version", "thresholds_version", "precision"],
            "properties": {"predictions": {"type": "array", "items": scored}},
        },
        "LabelsAccepted": {
            "type": "object",
            "required": ["labels_accepted", "unknown_transaction_ids"],
            "properties": {
                "labels_accepted": {"type": "integer", "minimum": 0},
                "unknown_transaction_ids": {"type": "array", "items": token},
            },
        },
    }


def _errors() -> dict[str, Any]:
    body = {codecs.JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {status: {"description": why, "content": body} for status, why in ERROR_STATUSES.items()}


def _invocations() -> dict[str, Any]:
    rows = {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}}
    json_body = {
        "anyOf": [
            {"$ref": "#/components/schemas/Instances"},
            rows,
            {"$ref": "#/components/schemas/Row"},
            {"$ref": "#/components/schemas/Transactions"},
            {"$ref": "#/components/schemas/Labels"},
        ]
    }
    text = {"type": "string", "minLength": 1}
    headers = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        | {"description": why}
        for name, why in SAGEMAKER_HEADERS.items()
    ]
    accept = {
        "name": "Accept",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "response type, with q-values and wildcards: one of "
        f"{', '.join(codecs.RESPONSE_TYPES)} is chosen (406 when none fits); "
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT when absent or empty",
    }
    return {
        "post": {
            "operationId": OPERATION_ID,
            "summary": "Score feature vectors or raw transactions, or record fraud labels",
            "parameters": [accept, *headers],
            "requestBody": {
                "required": True,
                "content": {
                    codecs.JSON: {"schema": json_body},
                    codecs.CSV: {"schema": text | {"description": "one row per line"}},
                    codecs.JSONLINES: {"schema": text | {"description": "one JSON row a line"}},
                    codecs.NPY: {
                        "schema": {"type": "string", "format": "binary"},
                        "description": "(rows, features) ints or floats, allow_pickle=False",
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "one prediction per row, in order",
                    "links": LINKS,
                    "headers": {
                        "X-Amzn-SageMaker-Custom-Attributes": {"schema": {"type": "string"}}
                    },
                    "content": {
                        codecs.JSON: {
                            "schema": {
                                "anyOf": [
                                    {"$ref": "#/components/schemas/Predictions"},
                                    {"$ref": "#/components/schemas/TransactionPredictions"},
                                    {"$ref": "#/components/schemas/LabelsAccepted"},
                                ]
                            }
                        },
                        codecs.CSV: {"schema": {"type": "string"}},
                        codecs.JSONLINES: {"schema": {"type": "string"}},
                    },
                },
                **_errors(),
            },
        }
    }


def document(names: Sequence[str], model_version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a package with features ``names``."""
    ok_empty = {"200": {"description": "healthy: the model is loaded and warm"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fraud scoring (SageMaker bring-your-own-container contract)",
            "version": model_version or "unloaded",
        },
        "paths": {
            "/ping": {"get": {"responses": ok_empty | {"503": _errors()["503"]}}},
            "/invocations": _invocations(),
            "/execution-parameters": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "batch transform settings",
                            "content": {
                                codecs.JSON: {
                                    "schema": {
                                        "type": "object",
                                        "required": [
                                            "MaxConcurrentTransforms",
                                            "BatchStrategy",
                                            "MaxPayloadInMB",
                                        ],
                                        "properties": {
                                            "MaxConcurrentTransforms": {"type": "integer"},
                                            "BatchStrategy": {
                                                "enum": ["MULTI_RECORD", "SINGLE_RECORD"]
                                            },
                                            "MaxPayloadInMB": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        }
                    }
                }
            },
            "/metrics": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "this document",
                            "content": {codecs.JSON: {"schema": {"type": "object"}}},
                        }
                    }
                }
            },
        },
        "components": {"schemas": _components(names)},
    }


def render(doc: dict[str, Any]) -> bytes:
    """The document as JSON bytes (the stdlib: id bounds exceed orjson's 64-bit integers)."""
    return json.dumps(doc, separators=(",", ":")).encode()
