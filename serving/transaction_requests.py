"""Transaction and label request bodies -> validated store inputs: pure functions.

A transaction: ``transaction_id``, ``customer_id``, ``terminal_id`` (opaque tokens: strings
or non-negative integers; a whole number written with a fraction, ``7.0``, is the integer up to
2**53), ``amount`` (a finite number), ``timestamp`` (ISO 8601 with a zone,
or epoch seconds; sub-second parts are dropped, as offline). A label: ``transaction_id`` and
``fraud`` (true or false).

Card numbers never enter: an id of 13-19 digits that passes the Luhn check is refused with a
message that names the field and position but not the value, unless the deployment allows
numeric ids (network tokens). Every other refusal names the field and what was expected.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import orjson

from core.windows import MAX_INT_ID, id_key, to_cents
from serving.errors import BadRequest
from serving.feature_store.base import Label, Transaction

ID_FIELDS = ("transaction_id", "customer_id", "terminal_id")
MAX_ID_CHARS = 128
MAX_AMOUNT = 1e12
MAX_EPOCH_S = 1e11
EXACT_FLOAT_INT = 2**53  # above it a float id written as 7.0 may not be the id the caller meant


@dataclass(frozen=True)
class TransactionRequest:
    transactions: list[Transaction]
    return_features: bool


def is_card_number(value: str | int) -> bool:
    """13-19 digits passing the Luhn check: possibly a primary account number."""
    digits = str(value)
    if not (13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _token(item: dict[str, Any], field: str, where: str, allow_numeric: bool) -> str | int:
    value = item.get(field)
    if type(value) is str and 0 < len(value) < 13 and value.isprintable():
        return value  # the usual token: too short to be a card number
    if type(value) is float and value.is_integer() and 0 <= value <= EXACT_FLOAT_INT:
        value = int(value)  # JSON (and JSON Schema's "integer") does not tell 7.0 from 7
    if type(value) is int:
        if not 0 <= value <= MAX_INT_ID:
            raise BadRequest(f"{where}.{field} must be a string or an integer in 0..{MAX_INT_ID}")
    elif isinstance(value, str):
        if not 0 < len(value) <= MAX_ID_CHARS or not value.isprintable():
            raise BadRequest(f"{where}.{field} must be 1-{MAX_ID_CHARS} printable characters")
    else:
        raise BadRequest(f"{where}.{field} is missing or not a string or integer")
    if not allow_numeric and is_card_number(value):
        raise BadRequest(
            f"{where}.{field} looks like a card number (13-19 digits passing the Luhn check) "
            "and is refused; send a token, or set FRAUD_ALLOW_NUMERIC_IDS=1 if your ids are "
            "network tokens"
        )
    return value


def parse_timestamp(value: object, where: str) -> int:
    """ISO 8601 with a zone, or epoch seconds -> whole epoch seconds (floored). Both forms
    cover the same range, 0 <= seconds < MAX_EPOCH_S: one event dated past it would leave
    every later one "too old" for the feature store."""
    if type(value) in (int, float):
        seconds = float(value)  # type: ignore[arg-type]
        if not math.isfinite(seconds) or not 0 <= seconds < MAX_EPOCH_S:
            raise BadRequest(f"{where}.timestamp must be epoch seconds between 0 and 1e11")
        return math.floor(seconds)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise BadRequest(
                f"{where}.timestamp must be ISO 8601 with a zone (e.g. 2018-08-08T13:05:00Z) "
                "or epoch seconds"
            )
        seconds = moment.timestamp()
        if not 0 <= seconds < MAX_EPOCH_S:
            raise BadRequest(
                f"{where}.timestamp must be between 1970-01-01T00:00:00Z and the year 5138 "
                "(epoch seconds 0 to 1e11)"
            )
        return math.floor(seconds)
    raise BadRequest(f"{where}.timestamp is missing; expected ISO 8601 or epoch seconds")


def _amount(value: object, where: str) -> int:
    if type(value) not in (int, float) or not math.isfinite(value) or abs(value) > MAX_AMOUNT:  # type: ignore[arg-type]
        raise BadRequest(f"{where}.amount must be a finite number below {MAX_AMOUNT:g}")
    return to_cents(float(value))  # type: ignore[arg-type]


def _items(doc: dict[str, Any], field: str) -> list[Any]:
    items = doc[field]
    if not isinstance(items, list) or not items:
        raise BadRequest(f"{field} must be a non-empty list")
    return items


def parse_transactions(doc: dict[str, Any], allow_numeric_ids: bool) -> TransactionRequest:
    out: list[Transaction] = []
    for i, item in enumerate(_items(doc, "transactions")):
        where = f"transactions[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object with {', '.join(ID_FIELDS)}, ...")
        tx_id = _token(item, "transaction_id", where, allow_numeric_ids)
        customer = _token(item, "customer_id", where, allow_numeric_ids)
        terminal = _token(item, "terminal_id", where, allow_numeric_ids)
        out.append(
            Transaction(  # transaction_id, key, customer, terminal, time_s, cents
                tx_id,
                id_key(tx_id),
                id_key(customer),
                id_key(terminal),
                parse_timestamp(item.get("timestamp"), where),
                _amount(item.get("amount"), where),
            )
        )
    flag = doc.get("return_features", False)
    if not isinstance(flag, bool):
        raise BadRequest("return_features must be true or false")
    return TransactionRequest(out, flag)


def parse_labels(doc: dict[str, Any], allow_numeric_ids: bool) -> list[tuple[str | int, Label]]:
    """(transaction id as sent, label) per item."""
    out: list[tuple[str | int, Label]] = []
    for i, item in enumerate(_items(doc, "labels")):
        where = f"labels[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object with transaction_id and fraud")
        tx_id = _token(item, "transaction_id", where, allow_numeric_ids)
        fraud = item.get("fraud")
        if not isinstance(fraud, bool):
            raise BadRequest(f"{where}.fraud must be true or false")
        out.append((tx_id, Label(id_key(tx_id), fraud)))
    return out


def sniff(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """The parsed body when it is a JSON transaction or label request; None for anything
    else (feature vectors keep their own decoder). Two substring checks on the fast path."""
    if b'"transactions"' not in body and b'"labels"' not in body:
        return None
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the feature-vector decoder names what is wrong with it
    if isinstance(doc, dict) and ("transactions" in doc or "labels" in doc):
        return doc
    return None
