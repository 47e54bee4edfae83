"""Data capture: SageMaker's record format and layout, sampling, flushing, identifier hashing."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.capture import DataCapture
from serving.identifiers import WITHHELD, IdentifierHasher

SECRET = b"test-secret"
CARD = "4111111111111111"
CUSTOMER = "cust-8842"
T0 = dt.datetime(2024, 5, 1, 13, 4, 5, 250_000, tzinfo=dt.UTC)
FILE_NAME = re.compile(r"^\d{2}-\d{2}-\d{2}-\d+-[0-9a-f]{8}\.jsonl$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_capture(
    tmp_path: Path,
    percent: float = 100.0,
    hasher: IdentifierHasher | None = None,
    clock: Clock | None = None,
    seed: int | None = 0,
    **bounds: int,
) -> DataCapture:
    return DataCapture(
        tmp_path,
        "fraud-ep",
        "AllTraffic",
        percent,
        hasher or IdentifierHasher((), b""),
        clock or Clock(T0),
        seed,
        **bounds,
    )


def capture_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.rglob("*.jsonl"))


def read_records(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in capture_files(tmp_path)
        for line in path.read_text().splitlines()
    ]


def body(record: dict[str, Any], side: str) -> dict[str, str]:
    sides: dict[str, dict[str, str]] = record["captureData"]
    return sides[side]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_records_follow_the_sagemaker_capture_format(tmp_path: Path) -> None:
    array = np.arange(30, dtype=np.float32).reshape(2, 15)
    capture = make_capture(tmp_path)
    capture.start()
    capture.submit(
        b'{"instances": [[1, 2]]}',
        "application/json",
        b'{"predictions": [0.1]}',
        "application/json",
        "inf-1",
    )
    capture.submit(b"1,2,3\n4,5,6\n", "text/csv; charset=utf-8", b"0.1\n0.2\n", "text/csv", None)
    capture.submit(
        npy_bytes(array),
        "application/x-npy",
        b'{"a": 1}\n{"a": 2}\n',
        "application/jsonlines",
        None,
    )
    capture.close()

    records = read_records(tmp_path)
    assert len(records) == 3 and capture.written == 3 and capture.dropped == 0
    for record in records:
        assert list(record) == ["captureData", "eventMetadata", "eventVersion"]
        assert record["eventVersion"] == "0"
        assert list(record["captureData"]) == ["endpointInput", "endpointOutput"]
        for side, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
            assert list(body(record, side)) == ["observedContentType", "mode", "data", "encoding"]
            assert body(record, side)["mode"] == mode
        metadata = record["eventMetadata"]
        assert isinstance(metadata, dict)
        assert UUID.match(metadata["eventId"])
        assert metadata["inferenceTime"] == "2024-05-01T13:04:05Z"
    assert len({r["eventMetadata"]["eventId"] for r in records}) == 3

    as_json, as_csv, as_npy = records
    assert as_json["eventMetadata"]["inferenceId"] == "inf-1"
    assert "inferenceId" not in as_csv["eventMetadata"]
    assert body(as_json, "endpointInput") == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"instances": [[1, 2]]}',
        "encoding": "JSON",
    }
    assert body(as_json, "endpointOutput")["data"] == '{"predictions": [0.1]}'
    assert body(as_csv, "endpointInput") == {
        "observedContentType": "text/csv; charset=utf-8",
        "mode": "INPUT",
        "data": "1,2,3\n4,5,6\n",
        "encoding": "CSV",
    }
    assert body(as_csv, "endpointOutput")["encoding"] == "CSV"
    npy = body(as_npy, "endpointInput")
    assert npy["encoding"] == "BASE64" and npy["observedContentType"] == "application/x-npy"
    decoded = np.load(io.BytesIO(base64.b64decode(npy["data"])), allow_pickle=False)
    np.testing.assert_array_equal(decoded, array)
    assert body(as_npy, "endpointOutput")["encoding"] == "JSON"


def test_files_sit_under_hour_directories_and_rotate_when_the_hour_changes(
    tmp_path: Path,
) -> None:
    clock = Clock(T0)
    capture = make_capture(tmp_path, clock=clock)
    capture.start()
    capture.submit(b"1", "text/csv", b"0.5", "text/csv", None)
    clock.now = T0 + dt.timedelta(minutes=30)  # 13:34, same hour
    capture.submit(b"2", "text/csv", b"0.5", "text/csv", None)
    clock.now = dt.datetime(2024, 5, 1, 14, 0, 1, tzinfo=dt.UTC)
    capture.submit(b"3", "text/csv", b"0.5", "text/csv", None)
    clock.now = dt.datetime(2024, 5, 2, 0, 59, 59, tzinfo=dt.UTC)
    capture.submit(b"4", "text/csv", b"0.5", "text/csv", None)
    capture.close()

    files = capture_files(tmp_path)
    relative = [path.relative_to(tmp_path).parent.as_posix() for path in files]
    assert relative == [
        "fraud-ep/AllTraffic/2024/05/01/13",
        "fraud-ep/AllTraffic/2024/05/01/14",
        "fraud-ep/AllTraffic/2024/05/02/00",
    ]
    assert all(FILE_NAME.match(path.name) for path in files)
    assert files[0].name.startswith("13-04-05-") and files[2].name.startswith("00-59-59-")
    lines = [
        [
            json.loads(line)["captureData"]["endpointInput"]["data"]
            for line in path.read_text().splitlines()
        ]
        for path in files
    ]
    assert lines == [["1", "2"], ["3"], ["4"]]


def test_non_utc_clock_is_bucketed_in_utc(tmp_path: Path) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    capture = make_capture(tmp_path, clock=Clock(dt.datetime(2024, 5, 1, 1, 30, tzinfo=plus_two)))
    capture.submit(b"1", "text/csv", b"0.5", "text/csv", None)
    capture.close()  # never started: close drains on the calling thread
    (path,) = capture_files(tmp_path)
    assert path.parent.relative_to(tmp_path).as_posix() == "fraud-ep/AllTraffic/2024/04/30/23"
    assert read_records(tmp_path)[0]["eventMetadata"]["inferenceTime"] == ("2024-04-30T23:30:00Z")


def submit_sampled(capture: DataCapture, n: int) -> int:
    chosen = 0
    for i in range(n):
        if capture.should_capture():
            chosen += 1
            capture.submit(str(i).encode(), "text/csv", b"0.5", "text/csv", None)
    return chosen


@pytest.mark.parametrize(("percent", "expected"), [(0.0, 0), (100.0, 2_000)])
def test_sampling_at_the_extremes_writes_nothing_or_everything(
    tmp_path: Path, percent: float, expected: int
) -> None:
    capture = make_capture(tmp_path, percent=percent, seed=None)
    capture.start()
    assert submit_sampled(capture, 2_000) == expected
    capture.close()
    assert len(read_records(tmp_path)) == expected == capture.written


def test_sampling_thirty_percent_with_a_seed_is_reproducible(tmp_path: Path) -> None:
    capture = make_capture(tmp_path / "a", percent=30.0, seed=7)
    capture.start()
    chosen = submit_sampled(capture, 2_000)
    capture.close()
    assert 500 <= chosen <= 700
    assert len(read_records(tmp_path / "a")) == chosen
    again = make_capture(tmp_path / "b", percent=30.0, seed=7)
    assert [again.should_capture() for _ in range(2_000)].count(True) == chosen


def test_close_flushes_everything_submitted_before_it(tmp_path: Path) -> None:
    capture = make_capture(tmp_path)
    capture.start()
    for i in range(1_000):
        capture.submit(
            json.dumps({"i": i}).encode(),
            "application/json",
            b"[0.5]",
            "application/json",
            f"id-{i}",
        )
    capture.close()
    capture.close()  # idempotent
    records = read_records(tmp_path)
    assert len(records) == 1_000 == capture.written
    ids = [r["eventMetadata"]["inferenceId"] for r in records]
    assert ids == [f"id-{i}" for i in range(1_000)]
    capture.submit(b"1", "text/csv", b"0.5", "text/csv", None)
    assert capture.dropped == 1 and len(read_records(tmp_path)) == 1_000


def test_written_batches_reach_the_file_before_close(tmp_path: Path) -> None:
    capture = make_capture(tmp_path)
    capture.start()
    for i in range(50):
        capture.submit(str(i).encode(), "text/csv", b"0.5", "text/csv", None)
    deadline = time.monotonic() + 5
    while capture.written < 50 and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        assert capture.written == 50
        assert len(read_records(tmp_path)) == 50  # flushed while the file is still open
    finally:
        capture.close()


def test_a_full_queue_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    capture = make_capture(tmp_path, max_queue_records=3)
    for i in range(10):  # writer not started: nothing drains
        capture.submit(str(i).encode(), "text/csv", b"0.5", "text/csv", None)
    assert capture.dropped == 7
    capture.close()
    assert capture.written == 3 and len(read_records(tmp_path)) == 3

    by_bytes = make_capture(tmp_path / "bytes", max_queue_bytes=100)
    by_bytes.submit(b"x" * 60, "text/csv", b"0.5", "text/csv", None)
    by_bytes.submit(b"x" * 60, "text/csv", b"0.5", "text/csv", None)
    by_bytes.close()
    assert (by_bytes.written, by_bytes.dropped) == (1, 1)


def test_identifiers_are_hashed_in_captured_input_and_output(tmp_path: Path) -> None:
    hasher = IdentifierHasher(["card_token", "customer_id"], SECRET)
    capture = make_capture(tmp_path, hasher=hasher)
    capture.start()
    request = {
        "instances": [
            {"card_token": CARD, "customer_id": CUSTOMER, "amount": 12.5},
            {"card_token": CARD, "customer_id": "cust-1", "amount": 3.0},
        ]
    }
    response = {"predictions": [{"customer_id": CUSTOMER, "score": 0.93}]}
    capture.submit(
        json.dumps(request).encode(),
        "application/json",
        json.dumps(response).encode(),
        "application/json",
        None,
    )
    lines = "\n".join(json.dumps({"card_token": CARD, "amount": a}) for a in (1, 2))
    capture.submit(lines.encode(), "application/jsonlines", b"0.1\n0.2\n", "text/csv", None)
    capture.close()

    raw = b"".join(path.read_bytes() for path in capture_files(tmp_path))
    assert CARD.encode() not in raw and CUSTOMER.encode() not in raw
    first, second = read_records(tmp_path)
    captured_in = json.loads(body(first, "endpointInput")["data"])
    captured_out = json.loads(body(first, "endpointOutput")["data"])
    card_token = hasher.token(CARD)
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{32}", card_token)
    assert [row["card_token"] for row in captured_in["instances"]] == [card_token] * 2
    assert captured_in["instances"][0]["customer_id"] == hasher.token(CUSTOMER)
    assert captured_in["instances"][0]["amount"] == 12.5
    assert captured_out["predictions"][0] == {"customer_id": hasher.token(CUSTOMER), "score": 0.93}
    jsonl = [json.loads(line) for line in body(second, "endpointInput")["data"].splitlines()]
    assert jsonl == [
        {"card_token": card_token, "amount": 1},
        {"card_token": card_token, "amount": 2},
    ]


def test_token_is_keyed_by_the_secret() -> None:
    hasher = IdentifierHasher(["card_token"], SECRET)
    same = IdentifierHasher(["card_token"], SECRET)
    other = IdentifierHasher(["card_token"], b"another-secret")
    assert hasher.redact({"card_token": CARD}) == same.redact({"card_token": CARD})
    assert hasher.token(CARD) != other.token(CARD)
    assert hasher.token(CARD) != hasher.token("4111111111111112")
    assert hasher.token(int(CARD)) == hasher.token(CARD)  # number and string spellings agree
    original = {"card_token": CARD, "amount": 1.0}
    assert hasher.redact(original) == {"card_token": hasher.token(CARD), "amount": 1.0}
    assert original["card_token"] == CARD  # a copy, not an in-place edit
    nested = hasher.redact({"card_token": {"pan": CARD}})["card_token"]
    assert isinstance(nested, str) and CARD not in nested


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [{"card_token": "PAN"}]}',
        '[{"card_token": "PAN"}, {"card_token": "x"}]',
        '{"card_token": "PAN", "amount": 3}',
        '{"card_token": "PAN"}\n{"card_token": "PAN"}\n',
    ],
)
def test_redact_text_hashes_every_json_shape(text: str) -> None:
    hasher = IdentifierHasher(["card_token"], SECRET)
    text = text.replace("PAN", CARD)
    redacted = hasher.redact_text(text, "application/json; charset=utf-8")
    assert CARD not in redacted and hasher.token(CARD) in redacted


def test_bodies_without_named_fields_pass_unchanged() -> None:
    hasher = IdentifierHasher(["card_token"], SECRET)
    for text, content_type in [
        ("1,2,3\n", "text/csv"),
        ('{"instances": [[1.5, 2]]}', "application/json"),
    ]:
        assert hasher.redact_text(text, content_type) == text
    identity = IdentifierHasher((), b"")
    record: dict[str, object] = {"card_token": CARD}
    assert identity.redact(record) is record
    assert identity.redact_text("{not json", "application/json") == "{not json"


def test_unparseable_json_with_identifiers_is_withheld(tmp_path: Path) -> None:
    hasher = IdentifierHasher(["card_token"], SECRET)
    capture = make_capture(tmp_path, hasher=hasher)
    malformed = ('{"instances": [{"card_token": "' + CARD + '", ').encode()
    capture.submit(malformed, "application/json", b'{"error": "bad"}', "application/json", None)
    capture.submit(("card_token=" + CARD).encode(), "text/plain", b"0.1", "text/csv", None)
    capture.close()
    assert CARD.encode() not in b"".join(p.read_bytes() for p in capture_files(tmp_path))
    for record in read_records(tmp_path):
        assert body(record, "endpointInput")["data"] == WITHHELD
        assert body(record, "endpointInput")["encoding"] == "JSON"


def test_empty_secret_with_fields_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        IdentifierHasher(["card_token"], b"")


def test_invalid_capture_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="percent"):
        make_capture(tmp_path, percent=101.0)
    with pytest.raises(ValueError, match="endpoint"):
        DataCapture(tmp_path, "../up", "AllTraffic", 10.0, IdentifierHasher((), b""))
