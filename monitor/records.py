"""Capture records -> feature rows, scores and decisions of one monitoring window.

Both request forms are read:

- feature vectors: the captured input is JSON (``{"instances": [...]}``, a list of rows, or
  one object of named features), JSON lines, CSV, or base64 ``.npy``; rows are lists of the
  15 values in order or objects of named features;
- transactions: the server computes the features, so the captured output's predictions
  carry them as ``features`` ({name: value}) beside ``transaction_id``; those features are
  used whatever the input held.

Outputs: JSON ``{"predictions": [{"score", "decision", ...}]}``, JSON lines of prediction
objects, or CSV scores. A prediction's join key for labels is its ``transaction_id``; else
the record's ``inferenceId`` (``{inferenceId}/{i}`` for the i-th row of a multi-row record).

Value checks kept per feature: missing (null, NaN, empty CSV field), wrong type (anything
but a JSON number; a string that reads as a number is still the wrong type) and, for
positional rows, rows with fewer or more values than the baseline has features. A record
that cannot be read at all is counted with the first reason; the window goes on.
"""

from __future__ import annotations

import array
import base64
import dataclasses
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

NUMBER_TYPES = frozenset({int, float})
JSON_LINES = frozenset({"application/jsonlines", "application/x-jsonlines"})


DECISIONS = ("", "approve", "review", "decline")
CHUNK_ROWS = 8192


@dataclasses.dataclass
class Window:
    """Everything a window's reports need, accumulated record by record.

    Records whose ``inferenceTime`` falls outside ``[start, end)`` (ISO strings, compared as
    text: the capture writes one fixed format) are skipped and counted. Rows are kept as
    float64 chunks of ``CHUNK_ROWS``, hours and decisions as small codes: an hour at 1,000
    req/s (3.6 M rows) takes ~0.5 GB, not the ~2 GB of Python lists.
    """

    names: Sequence[str]
    start: str = ""
    end: str = "9999"
    keep_keys: bool = True
    records: int = 0
    outside: int = 0
    unreadable: int = 0
    first_unreadable: str | None = None
    short_rows: int = 0  # positional rows with fewer values than features
    long_rows: int = 0  # positional rows with more values
    keys: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.wrong_type = np.zeros(len(self.names), np.int64)
        self.absent = np.zeros(len(self.names), np.int64)  # named rows without the feature
        self._pending: list[list[float]] = []
        self._chunks: list[np.ndarray] = []
        self._scores = array.array("d")  # NaN: no score captured
        self._decisions = array.array("b")  # index into DECISIONS; -1 another value
        self._hour_codes = array.array("i")
        self._hour_names: dict[str, int] = {}

    def matrix(self) -> np.ndarray:
        """(rows, features) float64; NaN where a value was missing or of the wrong type."""
        self._flush()
        if not self._chunks:
            return np.zeros((0, len(self.names)))
        return np.concatenate(self._chunks)

    @property
    def hours(self) -> np.ndarray:
        """(rows,) ``yyyy-mm-ddThh`` of each row's inference time."""
        names = np.array(list(self._hour_names) or [""])
        return (
            names[np.frombuffer(self._hour_codes, dtype=np.int32)]
            if self._hour_codes
            else (np.zeros(0, dtype=names.dtype))
        )

    @property
    def scores(self) -> np.ndarray:
        return np.frombuffer(self._scores, dtype=np.float64) if self._scores else np.zeros(0)

    @property
    def decisions(self) -> np.ndarray:
        codes = (
            np.frombuffer(self._decisions, dtype=np.int8)
            if self._decisions
            else np.zeros(0, np.int8)
        )
        return np.array([*DECISIONS, "other"])[codes]

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.array(self._pending, dtype=np.float64))
            self._pending = []

    # -- reading ---------------------------------------------------------------------------

    def add_file(self, content: bytes) -> None:
        for line in content.splitlines():
            if line.strip():
                self.add_line(line)

    def add_line(self, line: bytes) -> None:
        self.records += 1
        try:
            self._add(orjson.loads(line))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            self.unreadable += 1
            if self.first_unreadable is None:
                self.first_unreadable = f"record {self.records}: {type(exc).__name__}: {exc}"[:300]

    def _add(self, record: dict[str, Any]) -> None:
        capture = record["captureData"]
        metadata = record.get("eventMetadata", {})
        # to the second: SageMaker writes "...:05Z", other writers may add fractions
        moment = str(metadata.get("inferenceTime", ""))[:19]
        if not self.start[:19] <= moment < self.end[:19]:
            self.outside += 1
            return
        hour = moment[:13]
        inference_id = metadata.get("inferenceId") or metadata.get("eventId", "")
        predictions = _predictions(capture.get("endpointOutput"))
        if predictions and all(isinstance(p.get("features"), dict) for p in predictions):
            rows: list[Any] = [p["features"] for p in predictions]  # the transaction form
        else:
            rows = _input_rows(capture["endpointInput"])
        if predictions and len(predictions) != len(rows):
            raise ValueError(f"{len(rows)} input rows but {len(predictions)} predictions")
        # parse every row before keeping any, so a bad record leaves the window untouched
        values = [self._row(row) for row in rows]
        hour_code = self._hour_names.setdefault(hour, len(self._hour_names))
        for i, row in enumerate(values):
            p = predictions[i] if predictions else {}
            self._pending.append(row)
            self._hour_codes.append(hour_code)
            score = p.get("score")
            self._scores.append(float(score) if isinstance(score, int | float) else math.nan)
            decision = p.get("decision", "")
            self._decisions.append(DECISIONS.index(decision) if decision in DECISIONS else -1)
            if self.keep_keys:
                key = p.get("transaction_id")
                if key is None:
                    key = inference_id if len(values) == 1 else f"{inference_id}/{i}"
                self.keys.append(str(key))
        if len(self._pending) >= CHUNK_ROWS:
            self._flush()

    def _row(self, row: Any) -> list[float]:
        n = len(self.names)
        if isinstance(row, dict):
            values = []
            for j, name in enumerate(self.names):
                if name not in row:
                    self.absent[j] += 1
                    values.append(math.nan)
                else:
                    values.append(self._value(j, row[name]))
            return values
        if not isinstance(row, list):
            raise TypeError(f"a row must be a list or an object, got {type(row).__name__}")
        if len(row) < n:
            self.short_rows += 1
            row = row + [None] * (n - len(row))
        elif len(row) > n:
            self.long_rows += 1
            row = row[:n]
        if NUMBER_TYPES.issuperset(map(type, row)):  # the common case: all numbers
            return [float(v) for v in row]
        return [self._value(j, v) for j, v in enumerate(row)]

    def _value(self, j: int, value: Any) -> float:
        kind = type(value)
        if kind in NUMBER_TYPES:
            return float(value)
        if value is None:
            return math.nan
        self.wrong_type[j] += 1
        return math.nan


def _predictions(output: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not output:
        return []
    encoding, content_type = output.get("encoding"), _media(output.get("observedContentType"))
    data = output.get("data", "")
    if encoding == "CSV" or content_type == "text/csv":
        return [{"score": float(line.split(",")[0])} for line in data.splitlines() if line]
    if encoding != "JSON":
        return []
    if content_type in JSON_LINES:
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    body = orjson.loads(data)
    if isinstance(body, dict) and isinstance(body.get("predictions"), list):
        return [p if isinstance(p, dict) else {"score": p} for p in body["predictions"]]
    return []


def _input_rows(body: dict[str, Any]) -> list[Any]:
    encoding, content_type = body.get("encoding"), _media(body.get("observedContentType"))
    data = body.get("data", "")
    if encoding == "BASE64":
        array = np.load(io.BytesIO(base64.b64decode(data)), allow_pickle=False)
        return [[float(v) for v in row] for row in np.atleast_2d(array)]
    if encoding == "CSV" or content_type == "text/csv":
        return [[_csv_field(f) for f in line.split(",")] for line in data.splitlines() if line]
    if content_type in JSON_LINES:
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
    parsed = orjson.loads(data)
    if isinstance(parsed, dict):
        if isinstance(parsed.get("instances"), list):
            return list(parsed["instances"])
        return [parsed]
    if isinstance(parsed, list) and parsed and not isinstance(parsed[0], (list, dict)):
        return [parsed]  # one row of numbers
    if isinstance(parsed, list):
        return parsed
    raise ValueError(f"input JSON is a {type(parsed).__name__}, not rows")


def _csv_field(field: str) -> Any:
    text = field.strip().strip('"')
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # counted as the wrong type


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()
