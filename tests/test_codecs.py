"""Request decoding, Accept negotiation, response encoding and feature checks.

The property test at the end holds ``decode`` to the SageMaker inference toolkit's decoder
(``sagemaker_inference.decoder``): wherever the toolkit reads a body as finite (n, 15) rows,
we read the same float32 rows, except for the deliberate differences listed in
``intended_difference``; and whatever the body, we either return finite rows or raise a 4xx
``ServingError``.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sagemaker_inference import decoder as toolkit

from core.features import FEATURE_NAMES
from serving.codecs import Decoded, decode, encode, negotiate
from serving.errors import BadRequest, NotAcceptable, ServingError, UnsupportedMediaType
from serving.validation import check_possible, out_of_range

NAMES = FEATURE_NAMES
N = len(NAMES)
JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
JSONLINES, X_JSONLINES = "application/jsonlines", "application/x-jsonlines"
# a plausible transaction: amount, weekend, night, customer (count, mean) x 3, terminal
# (count, risk) x 3
ROW = [12.5, 0, 1, 3, 10.0, 8, 11.25, 20, 12.0, 40, 0.0, 200, 0.1, 800, 0.05]


def named(row: list[Any], **extra: object) -> dict[str, object]:
    return {**dict(zip(NAMES, row, strict=True)), **extra}


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def csv_line(row: list[Any]) -> str:
    return ",".join(map(str, row))


def with_value(index: int, value: object) -> list[Any]:
    row: list[Any] = list(ROW)
    row[index] = value
    return row


def bad_request(body: bytes, content_type: str | None = JSON) -> str:
    with pytest.raises(BadRequest) as info:
        decode(body, content_type, NAMES)
    return str(info.value)


def assert_rows(decoded: Decoded, rows: list[list[Any]]) -> None:
    assert decoded.x.dtype == np.float32
    assert decoded.x.flags.c_contiguous
    np.testing.assert_array_equal(decoded.x, np.array(rows, dtype=np.float32))


# --- JSON ----------------------------------------------------------------------------------


def test_decode_reads_json_instances_of_rows() -> None:
    decoded = decode(json.dumps({"instances": [ROW, ROW]}).encode(), JSON, NAMES)
    assert_rows(decoded, [ROW, ROW])
    assert decoded.extras is None


def test_decode_keeps_non_feature_fields_of_named_instances_as_extras() -> None:
    body = {"instances": [named(ROW, transaction_id="t1"), named(ROW, transaction_id="t2")]}
    decoded = decode(json.dumps(body).encode(), JSON, NAMES)
    assert_rows(decoded, [ROW, ROW])
    assert decoded.extras == [{"transaction_id": "t1"}, {"transaction_id": "t2"}]


def test_decode_reads_named_fields_in_feature_order_whatever_the_key_order() -> None:
    shuffled = dict(reversed(list(named(ROW).items())))
    assert_rows(decode(json.dumps(shuffled).encode(), JSON, NAMES), [ROW])


def test_decode_gives_list_rows_empty_extras_beside_named_rows() -> None:
    body = {"instances": [ROW, named(ROW, transaction_id="t2")]}
    assert decode(json.dumps(body).encode(), JSON, NAMES).extras == [{}, {"transaction_id": "t2"}]


def test_decode_reads_a_bare_list_of_rows_a_single_row_and_a_single_object() -> None:
    assert_rows(decode(json.dumps([ROW, ROW]).encode(), JSON, NAMES), [ROW, ROW])
    assert_rows(decode(json.dumps(ROW).encode(), JSON, NAMES), [ROW])
    single = decode(json.dumps(named(ROW, transaction_id="t1")).encode(), JSON, NAMES)
    assert_rows(single, [ROW])
    assert single.extras == [{"transaction_id": "t1"}]


@pytest.mark.parametrize(
    "content_type", [None, "", "application/json", "Application/JSON; charset=utf-8"]
)
def test_decode_takes_json_when_content_type_is_absent_or_has_parameters(
    content_type: str | None,
) -> None:
    assert_rows(decode(json.dumps([ROW]).encode(), content_type, NAMES), [ROW])


def test_decode_ignores_a_utf8_byte_order_mark() -> None:
    assert_rows(decode(b"\xef\xbb\xbf" + json.dumps([ROW]).encode(), JSON, NAMES), [ROW])


def test_decode_rejects_a_row_of_the_wrong_length_naming_it() -> None:
    body = json.dumps({"instances": [ROW, ROW, ROW, ROW[:14]]}).encode()
    assert bad_request(body) == "row 3 has 14 values, expected 15"


def test_decode_rejects_a_non_numeric_value_naming_row_and_field() -> None:
    assert bad_request(json.dumps([with_value(0, "abc")]).encode()) == (
        "row 0 field 'amount' is not a number: 'abc'"
    )


@pytest.mark.parametrize("value", [True, False])
def test_decode_rejects_booleans_though_numpy_would_make_them_0_and_1(value: bool) -> None:
    message = bad_request(json.dumps([with_value(1, value)]).encode())
    assert message == f"row 0 field 'is_weekend' is not a number: {json.dumps(value)}"


def test_decode_rejects_null_and_numeric_strings() -> None:
    assert "field 'is_night' is not a number: null" in bad_request(
        json.dumps([with_value(2, None)]).encode()
    )
    assert "field 'amount' is not a number: '12.5'" in bad_request(
        json.dumps(named(with_value(0, "12.5"))).encode()
    )


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_decode_rejects_non_finite_json_numbers(value: str) -> None:
    rows = [json.dumps(ROW), json.dumps(ROW), json.dumps(ROW).replace("12.5", value, 1)]
    body = ("[" + ",".join(rows) + "]").encode()
    assert bad_request(body) == "row 2 has a non-finite value (NaN/inf) in 'amount'"


def test_decode_rejects_values_beyond_float32_naming_them() -> None:
    message = bad_request(json.dumps([with_value(4, 1e39)]).encode())
    assert message.startswith("row 0 value 1e+39 in 'customer_mean_amount_1d' is beyond")


def test_decode_rejects_integers_too_large_for_any_float() -> None:
    assert "row 0 field 'amount' is out of range" in bad_request(
        json.dumps([with_value(0, 10**400)]).encode()
    )


def test_decode_rejects_missing_named_features_listing_them() -> None:
    row = named(ROW)
    del row["terminal_risk_30d"]
    body = json.dumps({"instances": [row]}).encode()
    assert bad_request(body) == "missing features ['terminal_risk_30d'] in row 0"


@pytest.mark.parametrize("body", [b'"rows"', b"42", b"null", b'{"transaction_id": 1}'])
def test_decode_rejects_json_that_is_neither_rows_nor_instances(body: bytes) -> None:
    assert bad_request(body).startswith(
        "the JSON body must be a list of rows or an object with 'instances'"
    )


@pytest.mark.parametrize("body", [b"[]", b'{"instances": []}'])
def test_decode_rejects_json_without_rows(body: bytes) -> None:
    assert "no rows" in bad_request(body)


def test_decode_rejects_instances_that_are_not_a_list() -> None:
    assert bad_request(b'{"instances": 5}') == "'instances' must be a list of rows, got 5"


def test_decode_rejects_rows_that_are_neither_lists_nor_objects() -> None:
    body = json.dumps({"instances": [ROW, "x"]}).encode()
    assert bad_request(body).startswith("row 1 must be a list of 15 numbers or an object")


def test_decode_reports_where_json_is_invalid() -> None:
    assert bad_request(b"[1, ]").startswith("invalid JSON at line 1 column 5: ")
    assert bad_request(b"[\n1,\n}").startswith("invalid JSON at line 3 column 1: ")


def test_decode_rejects_deeply_nested_json_without_crashing() -> None:
    assert bad_request(b"[" * 100_000).startswith("invalid JSON")


@pytest.mark.parametrize("body", [b"", b"  \n\t", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("content_type", [JSON, CSV, NPY, JSONLINES])
def test_decode_rejects_an_empty_body(body: bytes, content_type: str) -> None:
    message = bad_request(body, content_type)
    assert message == "empty body" or (content_type == NPY and "not a valid .npy" in message)


def test_decode_rejects_invalid_utf8_naming_the_byte() -> None:
    assert bad_request(b"[1, \xff]") == "the body is not valid UTF-8: invalid start byte at byte 4"


def test_decode_refuses_an_unknown_content_type_listing_the_supported_ones() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode(b"<x/>", "application/xml", NAMES)
    message = str(info.value)
    assert "'application/xml'" in message
    for supported in (JSON, CSV, NPY, JSONLINES, X_JSONLINES):
        assert supported in message
    assert info.value.http_status == 415


# --- CSV -----------------------------------------------------------------------------------


def test_decode_reads_csv_rows_in_feature_order() -> None:
    body = f"{csv_line(ROW)}\n{csv_line(with_value(0, 99.5))}\n".encode()
    assert_rows(decode(body, CSV, NAMES), [ROW, with_value(0, 99.5)])


@pytest.mark.parametrize("ending", ["", "\n", "\r\n", "\n\n  \n"])
def test_decode_accepts_csv_line_endings_and_trailing_blank_lines(ending: str) -> None:
    body = (csv_line(ROW) + ending).encode()
    assert_rows(decode(body, "Text/CSV; charset=utf-8", NAMES), [ROW])


def test_decode_accepts_quoted_and_padded_csv_numbers() -> None:
    body = ",".join(f' "{v}" ' if i % 2 else f" {v} " for i, v in enumerate(ROW)).encode()
    assert_rows(decode(body, CSV, NAMES), [ROW])


def test_decode_rejects_a_csv_row_of_the_wrong_length() -> None:
    body = "\n".join([csv_line(ROW)] * 3 + [csv_line(ROW[:14])]).encode()
    assert bad_request(body, CSV) == "row 3 has 14 values, expected 15"


@pytest.mark.parametrize("field", ["abc", "", "True", "1j", "0x10", "12.5#note"])
def test_decode_rejects_csv_fields_that_are_not_decimal_numbers(field: str) -> None:
    message = bad_request(csv_line(with_value(0, field)).encode(), CSV)
    assert message == f"row 0 field 'amount' is not a number: {field!r}"


def test_decode_rejects_non_finite_csv_values() -> None:
    body = "\n".join([csv_line(ROW), csv_line(ROW), csv_line(with_value(0, "inf"))]).encode()
    assert bad_request(body, CSV) == "row 2 has a non-finite value (NaN/inf) in 'amount'"


def test_decode_rejects_blank_csv_lines_between_rows_so_rows_stay_lines() -> None:
    body = f"{csv_line(ROW)}\n\n{csv_line(ROW)}\n".encode()
    assert bad_request(body, CSV) == "row 1 is a blank line; expected 15 values"


def test_decode_rounds_large_csv_integers_once_as_numpy_does() -> None:
    # 2**60 + 2**36 + 1 rounds up to float32 directly, but to 2**60 through float64
    big = 2**60 + 2**36 + 1
    decoded = decode(csv_line([big] * N).encode(), CSV, NAMES)
    assert decoded.x[0, 0] == np.array([big], dtype=np.int64).astype(np.float32)[0]
    assert decoded.x[0, 0] != np.float32(float(big))


def test_decode_converts_large_json_integers_as_numpy_does() -> None:
    big = 2**60 + 2**36 + 1
    decoded = decode(json.dumps([big] * N).encode(), JSON, NAMES)
    assert decoded.x[0, 0] == np.array([big]).astype(np.float32)[0]


# --- NPY -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f8", "<f2", "<i8", ">u2", "<i1"])
def test_decode_reads_npy_of_any_numeric_dtype(dtype: str) -> None:
    rows = [[float(i % 2) for i in range(N)], [1.0] * N]
    assert_rows(decode(npy(np.array(rows, dtype=dtype)), NPY, NAMES), rows)


def test_decode_reads_a_one_dimensional_npy_as_one_row_and_fortran_order_as_c() -> None:
    assert_rows(decode(npy(np.array(ROW)), NPY, NAMES), [ROW])
    fortran = np.asfortranarray(np.array([ROW, with_value(0, 7.0)]))
    assert_rows(decode(npy(fortran), NPY, NAMES), [ROW, with_value(0, 7.0)])


@pytest.mark.parametrize(
    "array",
    [
        np.array([ROW], dtype=object),
        np.ones((1, N), dtype=bool),
        np.ones((1, N), dtype=np.complex64),
        np.ones((1, N), dtype="U3"),
        np.zeros((1, N), dtype=[("a", "<f4")]),
        np.ones((1, N), dtype="m8[s]"),
    ],
    ids=["object", "bool", "complex", "str", "structured", "timedelta"],
)
def test_decode_refuses_npy_that_is_not_plain_numbers(array: np.ndarray) -> None:
    assert "expected ints or floats" in bad_request(npy(array, allow_pickle=True), NPY)


@pytest.mark.parametrize("shape", [(N - 1,), (2, N + 1), (0, N), (1, 1, N), ()])
def test_decode_refuses_npy_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    message = bad_request(npy(np.zeros(shape)), NPY)
    assert message.startswith(f"the .npy array has shape {shape}, expected (15,) or (rows")


def test_decode_refuses_truncated_npy_without_allocating_its_claimed_size() -> None:
    assert "truncated" in bad_request(npy(np.ones((2, N)))[:-1], NPY)
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000, 15), }"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    assert "truncated: 0 data bytes of 1200000000000" in bad_request(body, NPY)


@pytest.mark.parametrize(
    "body", [b"not numpy", b"\x93NUMPY\x01\x00\x05\x00{'a'}", b"\x80\x04\x95pickle", b"PK\x03\x04"]
)
def test_decode_refuses_bodies_that_are_not_npy(body: bytes) -> None:
    assert bad_request(body, NPY).startswith("the body is not a valid .npy array: ")


def test_decode_refuses_npy_headers_over_numpys_safety_limit() -> None:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (15,), }" + " " * 20_000 + "\n"
    body = b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header.encode()
    assert "is large" in bad_request(body + npy(np.array(ROW))[-8 * N :], NPY)


def test_decode_rejects_nan_in_npy() -> None:
    array = np.array([ROW, ROW])
    array[1, 12] = np.nan
    assert bad_request(npy(array), NPY) == (
        "row 1 has a non-finite value (NaN/inf) in 'terminal_risk_7d'"
    )


# --- JSON lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [JSONLINES, X_JSONLINES])
def test_decode_reads_json_lines_of_rows_and_named_objects(content_type: str) -> None:
    body = f"{json.dumps(ROW)}\n{json.dumps(named(ROW, transaction_id='t2'))}\n".encode()
    decoded = decode(body, content_type, NAMES)
    assert_rows(decoded, [ROW, ROW])
    assert decoded.extras == [{}, {"transaction_id": "t2"}]


def test_decode_reports_the_json_line_that_is_invalid() -> None:
    body = f"{json.dumps(ROW)}\n{json.dumps(ROW)}\n[1, }}\n".encode()
    assert bad_request(body, JSONLINES).startswith("invalid JSON at line 3 column 5: ")


def test_decode_rejects_json_lines_errors_by_row() -> None:
    body = f"{json.dumps(ROW)}\n{json.dumps(with_value(1, True))}\n".encode()
    assert bad_request(body, JSONLINES) == "row 1 field 'is_weekend' is not a number: true"
    blank = f"{json.dumps(ROW)}\n\n{json.dumps(ROW)}\n".encode()
    assert bad_request(blank, JSONLINES).startswith("row 1 is a blank line")


# --- Accept --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "default", "expected"),
    [
        (None, CSV, CSV),
        ("", JSONLINES, JSONLINES),
        ("*/*", CSV, CSV),
        ("text/csv", JSON, CSV),
        ("Text/CSV; charset=utf-8", JSON, CSV),
        ("application/x-jsonlines", JSON, JSONLINES),
        ("application/jsonlines;q=0.5, text/csv;q=0.9", JSON, CSV),
        ("text/csv;q=0.2, application/json;q=0.8, */*;q=0.1", CSV, JSON),
        ("application/*", CSV, JSON),
        ("application/*", JSONLINES, JSONLINES),
        ("text/*", JSON, CSV),
        ("text/csv, application/json", JSON, CSV),  # equal q: the one listed first
        ("*/*;q=0.9, application/json", CSV, JSON),  # specific beats the wildcard
        ("text/csv;q=0, */*", CSV, JSON),  # q=0 rules csv out though */* would allow it
        ("application/xml, text/csv;q=0.1", JSON, CSV),
        ("text/csv;q=oops, application/json;q=0.5", CSV, JSON),  # malformed q is ignored
        ("image/png, */*;q=0.1", JSONLINES, JSONLINES),
    ],
)
def test_negotiate_picks_the_supported_type_with_the_highest_q(
    accept: str | None, default: str, expected: str
) -> None:
    assert negotiate(accept, default) == expected


@pytest.mark.parametrize(
    "accept", ["application/xml", "text/html, image/*", "application/json;q=0", "csv"]
)
def test_negotiate_refuses_when_nothing_acceptable_naming_header_and_types(accept: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        negotiate(accept, JSON)
    message = str(info.value)
    assert repr(accept) in message
    assert all(t in message for t in (JSON, CSV, JSONLINES))
    assert info.value.http_status == 406


def test_negotiate_rejects_an_unsupported_default_as_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="application/xml"):
        negotiate(None, "application/xml")


# --- encode --------------------------------------------------------------------------------

VERSIONS = {"model_version": "m", "thresholds_version": "t", "precision": "fp32"}
PREDICTIONS: list[dict[str, object]] = [
    {"score": 0.123456789, "is_fraud": False, "transaction_id": "t1"},
    {"score": 0.9, "is_fraud": True, "transaction_id": "t2"},
]


def test_encode_json_round_trips_with_versions_and_compact_separators() -> None:
    versions = {"model_version": "model-3", "thresholds_version": "thr-7", "precision": "fp32"}
    body = encode(PREDICTIONS, JSON, versions)
    assert json.loads(body) == {"predictions": PREDICTIONS, **versions}
    assert b" " not in body


def test_encode_csv_writes_one_score_per_line() -> None:
    body = encode(PREDICTIONS, CSV, VERSIONS)
    assert body.endswith(b"\n")
    scores = [float(line) for line in body.decode().splitlines()]
    assert scores == pytest.approx([0.123456789, 0.9], rel=1e-8)


def test_encode_json_lines_writes_one_prediction_per_line() -> None:
    body = encode(PREDICTIONS, JSONLINES, VERSIONS)
    assert body.endswith(b"\n")
    assert [json.loads(line) for line in body.splitlines()] == PREDICTIONS


def test_encode_accepts_numpy_scalars() -> None:
    predictions: list[dict[str, object]] = [{"score": np.float32(0.5), "is_fraud": np.bool_(1)}]
    assert json.loads(encode(predictions, JSON, VERSIONS))["predictions"] == [
        {"score": 0.5, "is_fraud": True}
    ]
    assert encode(predictions, CSV, VERSIONS) == b"0.5\n"


@pytest.mark.parametrize("accept", [JSON, CSV, JSONLINES])
def test_encode_refuses_a_non_finite_score_rather_than_write_invalid_output(accept: str) -> None:
    with pytest.raises(ValueError):
        encode([{"score": math.nan}], accept, VERSIONS)


# --- validation ----------------------------------------------------------------------------


def test_check_possible_accepts_real_transactions() -> None:
    x = np.array([ROW, with_value(0, 0.0), with_value(14, 1.0)], dtype=np.float32)
    check_possible(x, NAMES)  # raises on failure


@pytest.mark.parametrize(
    ("feature", "value", "expected"),
    [
        ("amount", -1.0, "a value >= 0"),
        ("is_weekend", 0.5, "0 or 1"),
        ("is_night", 2.0, "0 or 1"),
        ("customer_count_7d", -1.0, "a whole number >= 0"),
        ("terminal_count_30d", 2.5, "a whole number >= 0"),
        ("terminal_risk_1d", 1.5, "a value in [0, 1]"),
        ("terminal_risk_30d", -0.25, "a value in [0, 1]"),
        ("customer_mean_amount_30d", -3.0, "a value >= 0"),
    ],
)
def test_check_possible_rejects_impossible_values_naming_the_first_row_and_feature(
    feature: str, value: float, expected: str
) -> None:
    bad = with_value(NAMES.index(feature), value)
    x = np.array([ROW, bad, bad], dtype=np.float32)
    with pytest.raises(BadRequest) as info:
        check_possible(x, NAMES)
    assert str(info.value) == f"row 1 feature {feature!r} is {value}, expected {expected}"


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_check_possible_rejects_non_finite_values(value: float) -> None:
    x = np.array([ROW, with_value(11, value)], dtype=np.float32)
    with pytest.raises(BadRequest, match=r"row 1 has a non-finite value \(NaN/inf\)"):
        check_possible(x, NAMES)


def test_check_possible_has_a_rule_for_every_model_feature() -> None:
    # each feature has some value (-1 or 0.5) that its rule refuses
    for i, name in enumerate(NAMES):
        refused = 0
        for value in (-1.0, 0.5):
            try:
                check_possible(np.array([with_value(i, value)], dtype=np.float32), NAMES)
            except BadRequest as exc:
                assert repr(name) in str(exc)
                refused += 1
        assert refused, name


def test_out_of_range_flags_rows_and_counts_features_outside_training() -> None:
    mins, maxs = np.zeros(N), np.array(ROW) * 2
    x = np.array([ROW, with_value(0, 1000.0), with_value(3, 1000.0)], dtype=np.float32)
    x[2, 0] = -1.0
    rows, counts = out_of_range(x, mins, maxs)
    assert rows.tolist() == [False, True, True]
    expected = np.zeros(N, dtype=np.int64)
    expected[0], expected[3] = 2, 1
    np.testing.assert_array_equal(counts, expected)


# --- property: the toolkit's reading, and nothing but 4xx errors ---------------------------

NPY_MAGIC = b"\x93NUMPY"


def toolkit_rows(body: bytes, content_type: str) -> np.ndarray | None:
    """The toolkit's reading of ``body`` as finite (n, 15) float32 rows, else None.

    As its transformer does, JSON and CSV bodies are decoded from UTF-8 first. Bodies sent as
    NPY without the .npy magic are not given to it: np.load(allow_pickle=True) would unpickle
    them (we refuse them; the unit tests check that).
    """
    if content_type not in (JSON, CSV, NPY):
        return None  # the toolkit has no JSON lines decoder
    if content_type == NPY and not body.startswith(NPY_MAGIC):
        return None
    try:
        payload: bytes | str = body if content_type == NPY else body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty CSV, complex -> float casts, float overflow
        try:
            rows = np.asarray(toolkit.decode(payload, content_type)).astype(np.float32)
        except Exception:  # the toolkit fails in every way numpy and json can
            return None
    if rows.shape != (N,) and (rows.ndim != 2 or rows.shape[1] != N):
        return None
    if not np.isfinite(rows).all():
        return None
    return rows.reshape(-1, N)


def intended_difference(body: bytes, content_type: str) -> str | None:
    """Why we refuse a body the toolkit reads as finite rows, where we do so on purpose."""
    if content_type == NPY:
        stream = io.BytesIO(body)
        version = np.lib.format.read_magic(stream)
        v1 = version == (1, 0)
        read = np.lib.format.read_array_header_1_0 if v1 else np.lib.format.read_array_header_2_0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on headers written by Python 2
            shape, _, dtype = read(stream, max_header_size=2**31)
        if stream.tell() - (10 if v1 else 12) > 10_000:
            return "npy header over 10,000 characters: numpy's limit, lifted by allow_pickle"
        if dtype.kind not in "iuf":
            return f"npy dtype {dtype}: numbers only (no pickles, bools, complex, strings, times)"
        if shape and shape[0] == 0:
            return "npy with zero rows: we require at least one row"
        return None
    text = body.decode("utf-8")
    if content_type == JSON:
        leaves = list(json_leaves(json.loads(text)))
        if any(isinstance(v, bool) for v in leaves):
            return "JSON booleans: numpy makes them 0/1; true is not an amount or a count"
        if any(isinstance(v, str) for v in leaves):
            return "JSON strings: numpy's astype parses '1.5'; we take JSON numbers only"
        return None
    return csv_difference(text)


def json_leaves(value: object) -> Iterator[object]:
    if isinstance(value, list):
        for item in value:
            yield from json_leaves(item)
    else:
        yield value


def csv_difference(text: str) -> str | None:
    if "#" in text:
        return "CSV '#': genfromtxt drops the rest of the line as a comment"
    lines = [line.strip(" \r\n") for line in text.split("\n")]  # genfromtxt's notion of blank
    last = max(i for i, line in enumerate(lines) if line)
    if not all(lines[: last + 1]):
        return "blank CSV lines between rows: genfromtxt skips them; we keep row i = line i"
    for line in lines[: last + 1]:
        for field in line.split(","):
            if not field.strip():
                return "empty CSV field: genfromtxt fills it with -1 in an integer column"
            if not is_float(field) and genfromtxt_reads(field):
                return f"CSV {field!r}: genfromtxt reads bools, complex and hex; we take decimals"
    return None


def is_float(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def genfromtxt_reads(field: str) -> bool:
    """Whether genfromtxt's fallback converters (bool, complex, long double) take ``field``."""
    if field.upper() in ("TRUE", "FALSE"):
        return True
    for convert in (complex, np.longdouble):
        try:
            convert(field)
        except (ValueError, TypeError, OverflowError):
            continue
        return True
    return False


# integers that float32 rounds up directly (int64 -> float32) but down through float64: there
# the +d is rounded away, leaving an exact float32 tie that goes to even
ROUNDING_EDGES = st.builds(
    lambda k, d, sign: sign * (2**k + 2 ** (k - 24) + d),
    st.integers(54, 62),
    st.integers(1, 3),
    st.sampled_from([1, -1]),
)
# numbers: each body draws one kind for all its cells, so CSV columns share one dtype (as
# genfromtxt needs for a plain array) and all-integer bodies exercise int64 -> float32
NUMBER_KINDS = {
    "small floats": st.floats(-1e6, 1e6),
    "float32 floats": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "small ints": st.integers(-(10**6), 10**6),
    "int64 ints": st.one_of(st.integers(-(2**63), 2**63 - 1), ROUNDING_EDGES),
    "huge ints": st.one_of(st.integers(-(2**70), 2**70), st.integers()),
    "anything": st.one_of(st.floats(), st.integers()),
}
ODD_VALUES: st.SearchStrategy[object] = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e39, 10**400, 2**63, True, False, None, "1.5", "abc", [], {}]
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4))
JUNK_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@st.composite
def rows_of_numbers(draw: st.DrawFn) -> list[list[Any]]:
    cells = NUMBER_KINDS[draw(st.sampled_from(sorted(NUMBER_KINDS)))]
    width = draw(st.sampled_from([N] * 8 + [N - 1, N + 1]))
    n_rows = draw(st.integers(1, 3))
    rows = [draw(st.lists(cells, min_size=width, max_size=width)) for _ in range(n_rows)]
    if one_in(draw, 4):  # one odd cell in a quarter of the bodies
        row = draw(st.sampled_from(rows))
        row[draw(st.integers(0, width - 1))] = draw(ODD_VALUES)
    return rows


def one_in(draw: st.DrawFn, n: int) -> bool:
    return draw(st.integers(0, n - 1)) == 0


def as_named(row: list[Any]) -> dict[str, Any]:
    return dict(zip(NAMES, row, strict=False))  # a short row leaves features missing


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    if one_in(draw, 6):
        return json.dumps(draw(JUNK_JSON)).encode()
    rows = draw(rows_of_numbers())
    shape = draw(st.sampled_from(["rows", "rows", "row", "row", "instances", "named"]))
    payload: object = {
        "rows": rows,
        "row": rows[0],
        "instances": {"instances": rows},
        "named": {"instances": [as_named(row) for row in rows]},
    }[shape]
    return json.dumps(payload).encode()


@st.composite
def jsonlines_bodies(draw: st.DrawFn) -> bytes:
    rows = draw(rows_of_numbers())
    lines = [json.dumps(as_named(row) if draw(st.booleans()) else row) for row in rows]
    if one_in(draw, 4):
        lines.insert(draw(st.integers(0, len(lines))), json.dumps(draw(JUNK_JSON)))
    if one_in(draw, 4):
        lines.insert(draw(st.integers(0, len(lines))), "")
    return ("\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode()


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    if one_in(draw, 6):
        return draw(st.text(alphabet='0123456789.,-+eE \n\r"#aTruej_x', max_size=80)).encode()
    rows = draw(rows_of_numbers())
    quote = '"' if one_in(draw, 4) else ""
    lines = [
        ",".join(f"{quote}{v!r}{quote}" if isinstance(v, float) else str(v) for v in row)
        for row in rows
    ]
    if one_in(draw, 4):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", " ", "#c"])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return (newline.join(lines) + draw(st.sampled_from(["", newline, newline * 2]))).encode()


NPY_DTYPES = ["<f2", "<f4", ">f8", "<f8", "<i1", "<i8", ">u8", "?", "<c8", "<m8[s]", "<U4", "O"]


@st.composite
def npy_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["rows", "ramp", "ramp", "empty", "bytes after magic", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "bytes after magic":
        return NPY_MAGIC + draw(st.binary(max_size=160))
    if kind == "empty":
        return npy(np.zeros((0, N)))
    dtype = draw(st.sampled_from(NPY_DTYPES))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "ramp":  # distinct values, so a layout mix-up shows
                array = np.arange(draw(st.integers(1, 3)) * N).reshape(-1, N).astype(dtype)
            else:
                array = np.array(draw(rows_of_numbers()), dtype=dtype)
    except (ValueError, TypeError, OverflowError):  # ragged, or values the dtype cannot hold
        array = np.array([[0.0] * N])
    if one_in(draw, 3):
        array = array[0]  # 1-D
    elif draw(st.booleans()):
        array = np.asfortranarray(array)
    body = npy(array, allow_pickle=array.dtype.hasobject)
    if one_in(draw, 6):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@st.composite
def request_cases(draw: st.DrawFn) -> tuple[bytes, str]:
    bodies = {JSON: json_bodies, CSV: csv_bodies, NPY: npy_bodies, JSONLINES: jsonlines_bodies}
    content_type = draw(st.sampled_from(sorted(bodies)))
    body = draw(st.binary(max_size=40)) if one_in(draw, 10) else draw(bodies[content_type]())
    if one_in(draw, 10):  # the wrong label, or an odd one
        content_type = draw(st.sampled_from([JSON, CSV, NPY, X_JSONLINES, "text/plain"]))
    return body, content_type


@settings(
    max_examples=200,
    deadline=None,
    database=None,  # no .hypothesis/ directory; a failure prints its reproduction
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request_cases())
def test_decode_reads_what_the_toolkit_reads_and_fails_only_with_4xx(
    case: tuple[bytes, str],
) -> None:
    body, content_type = case
    try:
        ours: Decoded | None = decode(body, content_type, NAMES)
        refusal = ""
    except ServingError as exc:
        assert 400 <= exc.http_status < 500, exc
        ours, refusal = None, str(exc)
    if ours is not None:
        assert ours.x.dtype == np.float32 and ours.x.flags.c_contiguous
        assert ours.x.ndim == 2 and ours.x.shape[0] >= 1 and ours.x.shape[1] == N
        assert np.isfinite(ours.x).all()

    expected = toolkit_rows(body, content_type)
    difference = None if expected is None else intended_difference(body, content_type)
    event(
        f"{content_type}: we {'refuse' if ours is None else 'read'} it, the toolkit "
        f"{'cannot' if expected is None else 'reads it'}"
        + (f" (intended: {difference.split(':')[0]})" if difference else "")
    )
    if expected is not None and difference is None:
        assert ours is not None, f"the toolkit reads this body, we refused it: {refusal}"
        np.testing.assert_array_equal(ours.x, expected)

    # the converse on the toolkit's own JSON shapes: a bare list we accept, it reads the same
    if ours is not None and content_type == JSON and ours.extras is None:
        if isinstance(json.loads(body), list) and not body.startswith(b"\xef\xbb\xbf"):
            assert expected is not None, "we read a bare JSON list the toolkit cannot"
            np.testing.assert_array_equal(ours.x, expected)
