"""Transaction and label bodies -> store inputs (pure functions)."""

from __future__ import annotations

import pytest

from core.windows import id_key
from serving.errors import BadRequest
from serving.transaction_requests import parse_labels, parse_timestamp, parse_transactions


def _tx(tx_id: object) -> dict[str, object]:
    return {
        "transaction_id": tx_id,
        "customer_id": "c-1",
        "terminal_id": 12.0,
        "amount": 5.0,
        "timestamp": 1_533_733_500,
    }


def test_a_whole_number_id_written_as_7_0_is_the_integer_7() -> None:
    parsed = parse_transactions({"transactions": [_tx(7001.0)]}, allow_numeric_ids=False)
    tx = parsed.transactions[0]
    assert tx.transaction_id == 7001 and type(tx.transaction_id) is int
    assert tx.key == id_key(7001) and tx.terminal == id_key(12)
    [(label_id, label)] = parse_labels(
        {"labels": [{"transaction_id": 7001.0, "fraud": True}]}, allow_numeric_ids=False
    )
    assert label_id == 7001 and label.key == tx.key


@pytest.mark.parametrize("tx_id", [7.5, 2.0**53 + 2, -1.0, float("inf")])
def test_a_fractional_negative_or_inexact_float_id_is_refused(tx_id: float) -> None:
    with pytest.raises(BadRequest, match=r"transactions\[0\]\.transaction_id"):
        parse_transactions({"transactions": [_tx(tx_id)]}, allow_numeric_ids=False)


def test_a_card_number_written_as_a_float_is_still_refused() -> None:
    with pytest.raises(BadRequest, match="card number"):
        parse_transactions({"transactions": [_tx(4111111111111111.0)]}, allow_numeric_ids=False)


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59Z", "5138-11-16T09:46:40Z", "1969-12-31T23:59:59Z", 1e11, -1]
)
def test_a_timestamp_outside_1970_to_1e11_s_is_refused_in_either_form(when: object) -> None:
    with pytest.raises(BadRequest, match="1e11"):
        parse_timestamp(when, "transactions[0]")


def test_the_last_second_before_1e11_is_accepted_in_either_form() -> None:
    assert parse_timestamp("5138-11-16T09:46:39Z", "t") == parse_timestamp(99_999_999_999, "t")
