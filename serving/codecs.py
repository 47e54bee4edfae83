"""Request bodies -> feature rows and predictions -> response bodies: pure functions over bytes.

``decode`` reads JSON, CSV, NPY and JSON lines and returns ``Decoded.x``: (rows >= 1,
n_features) float32, C-contiguous, every value finite. It raises ``BadRequest`` or
``UnsupportedMediaType`` and nothing else: every parser failure is translated here.

Numbers become float32 the way the SageMaker inference toolkit makes them (``np.array`` over
the parsed values, then ``astype``; all-integer CSV through int64, as ``np.genfromtxt`` does),
so a body that both read gives bit-identical rows. Deliberate differences (booleans, numeric
strings, CSV comments and empty fields, pickles) are listed in tests/test_codecs.py.

``negotiate`` picks the response type from Accept; ``encode`` writes the response body.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from serving.errors import BadRequest, NotAcceptable, UnsupportedMediaType

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
JSONLINES = "application/jsonlines"
X_JSONLINES = "application/x-jsonlines"
RESPONSE_TYPES = (JSON, CSV, JSONLINES)

# exact types: bool subclasses int and is refused (numpy would silently make it 0/1)
_NUMBER_TYPES = frozenset((int, float))
_EXACT_INTEGERS = 2.0**53  # float64 holds every integer below this, so its path cannot matter
_FEW_ROWS = 4  # up to this many JSON rows, checked in plain Python (see _from_rows)
_SHOWN_CHARS = 40


@dataclass(frozen=True)
class Decoded:
    x: npt.NDArray[np.float32]  # (rows, n_features), C-contiguous, finite
    # per row, the non-feature fields of named-field JSON instances (e.g. transaction_id)
    extras: list[dict[str, object]] | None


def decode(body: bytes, content_type: str | None, feature_names: Sequence[str]) -> Decoded:
    """Parse a request body into feature rows; raise BadRequest naming what is wrong."""
    media = _media_type(content_type) or JSON  # SageMaker's default when the header is absent
    reader = _READERS.get(media)
    if reader is None:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {_show(content_type)}; supported: {', '.join(_READERS)}"
        )
    if not body:
        raise BadRequest("empty body")
    return reader(body, feature_names)


def _media_type(header: str | None) -> str | None:
    """'Application/JSON; charset=utf-8' -> 'application/json'; absent or blank -> None."""
    if header is None:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8-sig")  # a leading BOM (Excel's CSV export) is dropped
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    if not text or text.isspace():
        raise BadRequest("empty body")
    return text


def _lines(text: str) -> list[str]:
    """Split at '\\n' only (as genfromtxt does); trailing blank lines are dropped."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


# --- JSON and JSON lines -------------------------------------------------------------------


def _read_json(body: bytes, names: Sequence[str]) -> Decoded:
    try:
        # orjson parses a small body in about a third of the stdlib's time; where it refuses
        # (NaN literals, a BOM, lone surrogates, bad UTF-8 or syntax) the stdlib reads the
        # body as before and names the problem
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = _parse_json(_text(body), line=None)
    if isinstance(data, dict):
        if "instances" in data:
            rows = data["instances"]
            if not isinstance(rows, list):
                raise BadRequest(f"'instances' must be a list of rows, got {_show(rows)}")
        elif any(name in data for name in names):
            rows = [data]
        else:
            keys = _show(sorted(data)[:5])
            raise BadRequest(
                "the JSON body must be a list of rows or an object with 'instances' "
                f"(or one object of named features); got an object with keys {keys}"
            )
    elif isinstance(data, list):
        # a list of rows (lists or named objects), or else one row of numbers
        rows = data if not data or isinstance(data[0], (list, dict)) else [data]
    else:
        raise BadRequest(
            f"the JSON body must be a list of rows or an object with 'instances'; got {_show(data)}"
        )
    if not rows:
        raise BadRequest("the JSON body has no rows; expected at least one")
    return _from_rows(rows, names)


def _read_jsonlines(body: bytes, names: Sequence[str]) -> Decoded:
    rows = []
    for i, line in enumerate(_lines(_text(body))):
        if not line.strip():
            raise BadRequest(f"row {i} is a blank line; expected one JSON row per line")
        rows.append(_parse_json(line, line=i + 1))
    return _from_rows(rows, names)


def _parse_json(text: str, line: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno if line is None else line} column {exc.colno}"
        raise BadRequest(f"invalid JSON at {where}: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:  # over-long integer literals, deep nesting
        where = "" if line is None else f" at line {line}"
        raise BadRequest(f"invalid JSON{where}: {_clip(str(exc))}") from exc


def _check_echoable(extra: dict[str, object], row: int) -> None:
    """Extra fields are echoed in the response: refuse what JSON cannot carry back."""
    try:
        json.dumps(extra, allow_nan=False)
    except ValueError as exc:
        raise BadRequest(
            f"row {row} has a non-finite number (NaN/Infinity) in its extra fields "
            f"{sorted(extra)}; extra fields are echoed back and must be valid JSON"
        ) from exc


def _from_rows(rows: list[Any], names: Sequence[str]) -> Decoded:
    """Rows as JSON gives them (lists of numbers or named-field objects) -> Decoded."""
    n = len(names)
    values: list[list[Any]] = []
    extras: list[dict[str, object]] | None = None
    for i, row in enumerate(rows):
        if type(row) is list:
            if len(row) != n:
                raise BadRequest(f"row {i} has {len(row)} values, expected {n}")
            ordered = row
            if extras is not None:
                extras.append({})
        elif type(row) is dict:
            missing = [name for name in names if name not in row]
            if missing:
                raise BadRequest(f"missing features {missing} in row {i}")
            ordered = [row[name] for name in names]
            if extras is None:
                extras = [{} for _ in range(i)]
            extra = {k: v for k, v in row.items() if k not in names}
            if extra:
                _check_echoable(extra, i)
            extras.append(extra)
        else:
            raise BadRequest(
                f"row {i} must be a list of {n} numbers or an object of named features, "
                f"got {_show(row)}"
            )
        if not _NUMBER_TYPES.issuperset(map(type, ordered)):
            bad = next(k for k, v in enumerate(ordered) if type(v) not in _NUMBER_TYPES)
            raise BadRequest(f"row {i} field {names[bad]!r} is not a number: {_show(ordered[bad])}")
        values.append(ordered)
    if len(values) <= _FEW_ROWS and all(
        -_EXACT_INTEGERS < v < _EXACT_INTEGERS for row in values for v in row
    ):
        # the single-record request: every value finite and well inside float32, every int
        # exact in float64, so one direct conversion gives the same float32 values as the
        # general path (np.array, then astype) at a third of its numpy calls; NaN, inf and
        # huge values fail the comparison and take the general path, which names them
        return Decoded(np.array(values, dtype=np.float32), extras)
    return Decoded(_float32(values, values, names), extras)


# --- CSV -----------------------------------------------------------------------------------


def _read_csv(body: bytes, names: Sequence[str]) -> Decoded:
    n = len(names)
    fields_by_row: list[list[str]] = []
    values: list[list[float]] = []
    for i, line in enumerate(_lines(_text(body))):
        fields = line.split(",")
        if len(fields) != n:
            if not line.strip():
                raise BadRequest(f"row {i} is a blank line; expected {n} values")
            raise BadRequest(f"row {i} has {len(fields)} values, expected {n}")
        if '"' in line:
            fields = [_unquote(field) for field in fields]
        try:
            values.append(list(map(float, fields)))
        except ValueError:
            bad = next(k for k, f in enumerate(fields) if not _is_float(f))
            field = fields[bad].strip()
            raise BadRequest(
                f"row {i} field {names[bad]!r} is not a number: {_show(field)}"
            ) from None
        fields_by_row.append(fields)
    array: npt.NDArray[Any] = np.array(values)  # (rows, n_features) float64
    if not (np.abs(array) < _EXACT_INTEGERS).all():
        # large integers: an all-integer body goes int64 -> float32 (one rounding), like
        # genfromtxt's integer columns, not through float64 (two roundings)
        array = _int64_or(fields_by_row, array)
    return Decoded(_float32(array, values, names), None)


def _unquote(field: str) -> str:
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1]
    return field


def _is_float(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _int64_or(fields_by_row: list[list[str]], fallback: npt.NDArray[Any]) -> npt.NDArray[Any]:
    try:
        return np.array([[int(f) for f in fields] for fields in fields_by_row], dtype=np.int64)
    except (ValueError, OverflowError):  # a non-integer field, or one beyond int64
        return fallback


# --- NPY -----------------------------------------------------------------------------------

# v3.0 differs from v2.0 only by a UTF-8 header, which matters only for structured field names
_NPY_HEADER_READERS: dict[tuple[int, int], Callable[[Any], Any]] = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
    (3, 0): np.lib.format.read_array_header_2_0,
}


def _read_npy(body: bytes, names: Sequence[str]) -> Decoded:
    """Like np.load(allow_pickle=False), but sizes are checked before anything is allocated."""
    n = len(names)
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = _NPY_HEADER_READERS.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran_order, dtype = read_header(stream)
    except Exception as exc:  # the header is evaluated as a Python literal: any error type
        raise BadRequest(f"the body is not a valid .npy array: {_clip(str(exc))}") from exc
    if dtype.kind not in "iuf":  # object (pickles), bool, complex, strings, structured, times
        raise BadRequest(f"the .npy array has dtype {_clip(str(dtype))}, expected ints or floats")
    if len(shape) == 1 and shape[0] == n:
        rows = 1
    elif len(shape) == 2 and shape[1] == n and shape[0] >= 1:
        rows = int(shape[0])
    else:
        raise BadRequest(
            f"the .npy array has shape {_clip(str(shape))}, expected ({n},) or (rows >= 1, {n})"
        )
    offset = stream.tell()
    need = rows * n * dtype.itemsize
    if len(body) - offset < need:
        raise BadRequest(f"the .npy body is truncated: {len(body) - offset} data bytes of {need}")
    flat = np.frombuffer(body, dtype=dtype, count=rows * n, offset=offset)
    array = flat.reshape(n, rows).T if fortran_order else flat.reshape(rows, n)
    return Decoded(_float32(array, array, names), None)


# --- shared --------------------------------------------------------------------------------


def _float32(array_like: Any, source: Any, names: Sequence[str]) -> npt.NDArray[np.float32]:
    """np.array(values).astype(float32), checked finite; ``source[r][c]`` names culprits."""
    try:
        with np.errstate(over="ignore"):  # float32 overflow becomes inf, reported below
            x = np.asarray(array_like).astype(np.float32, order="C")
    except (OverflowError, ValueError, TypeError) as exc:  # integers beyond any float
        for r, row in enumerate(source):
            for c, value in enumerate(row):
                if type(value) is int and _overflows(value):
                    raise BadRequest(
                        f"row {r} field {names[c]!r} is out of range: {_show(value)}"
                    ) from exc
        raise BadRequest(f"values cannot be converted to float32: {_clip(str(exc))}") from exc
    finite = np.isfinite(x)
    if not finite.all():
        r, c = (int(i) for i in np.argwhere(~finite)[0])
        if _is_finite(source[r][c]):
            raise BadRequest(
                f"row {r} value {float(source[r][c]):.6g} in {names[c]!r} is beyond the "
                "float32 range (about ±3.4e38)"
            )
        raise BadRequest(f"row {r} has a non-finite value (NaN/inf) in {names[c]!r}")
    return x


def _overflows(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError, TypeError):
        return False


def _clip(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "..."


def _show(value: object) -> str:
    """A short JSON-flavoured picture of a bad value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list) and len(value) > 5:
        return f"a list of {len(value)} items"
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return type(value).__name__
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


_READERS: dict[str, Callable[[bytes, Sequence[str]], Decoded]] = {
    JSON: _read_json,
    CSV: _read_csv,
    NPY: _read_npy,
    JSONLINES: _read_jsonlines,
    X_JSONLINES: _read_jsonlines,
}


# --- Accept and responses ------------------------------------------------------------------

_RESPONSE_ALIASES = {JSON: JSON, CSV: CSV, JSONLINES: JSONLINES, X_JSONLINES: JSONLINES}


@functools.lru_cache(maxsize=256)  # callers send the same few headers; refusals are not kept
def negotiate(accept: str | None, default: str) -> str:
    """The response type for an Accept header: one of RESPONSE_TYPES.

    Each type takes the q of its most specific matching range (exact > type/* > */*); the
    highest q wins, then the more specific match, then the range listed first, then
    ``default``. Ranges with malformed q are ignored; q=0 rules a type out.
    """
    preferred = _RESPONSE_ALIASES.get(_media_type(default) or "")
    if preferred is None:
        raise ValueError(f"default response type {default!r} is not one of {RESPONSE_TYPES}")
    if accept is None or not accept.strip() or accept == "*/*":
        return preferred
    if accept in _RESPONSE_ALIASES:
        return _RESPONSE_ALIASES[accept]
    ranges = [r for r in map(_media_range, accept.split(",")) if r is not None]
    best, best_key = None, (0.0, -1, 0, False)
    for candidate in (preferred, *RESPONSE_TYPES):
        matches = [
            (q, spec, -pos)
            for pos, (media, q) in enumerate(ranges)
            if (spec := _specificity(media, candidate)) is not None
        ]
        if not matches:
            continue
        most_specific = max(m[1] for m in matches)
        q, spec, neg_pos = max(m for m in matches if m[1] == most_specific)
        key = (q, spec, neg_pos, candidate == preferred)
        if q > 0 and key > best_key:
            best, best_key = candidate, key
    if best is None:
        raise NotAcceptable(
            f"none of the types in Accept {_clip(repr(accept))} can be produced; "
            f"supported: {', '.join(RESPONSE_TYPES)}"
        )
    return best


def _media_range(part: str) -> tuple[str, float] | None:
    """'text/csv;q=0.5' -> ('text/csv', 0.5); None when malformed."""
    media, *params = part.split(";")
    media = media.strip().lower()
    if media.count("/") != 1:
        return None
    q = 1.0
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            if not 0.0 <= q <= 1.0:  # also false for nan
                return None
    return media, q


def _specificity(media_range: str, media: str) -> int | None:
    if media_range == "*/*":
        return 0
    main, sub = media_range.split("/")
    if sub == "*":
        return 1 if media.startswith(main + "/") else None
    return 2 if _RESPONSE_ALIASES.get(media_range) == media else None


def _plain(value: object) -> object:
    """json default= hook: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# one encoder, built once: json.dumps with options builds a new one per call
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_plain)


def encode(predictions: list[dict[str, object]], accept: str, versions: dict[str, str]) -> bytes:
    """The response body for ``accept`` (a type ``negotiate`` returned).

    JSON: ``{"predictions": [...], **versions}`` (model_version, thresholds_version,
    precision); CSV: each prediction's score on its own line; JSON lines: one prediction
    object per line.
    """
    if accept == JSON:
        _check_scores(predictions)
        return _json_bytes({"predictions": predictions, **versions})
    if accept == CSV:
        lines = [f"{p['score']:.8g}\n" for p in predictions]
        if any(line[-4:-1] in ("nan", "inf") for line in lines):
            raise ValueError("a prediction has a non-finite score")
        return "".join(lines).encode()
    if accept in (JSONLINES, X_JSONLINES):
        _check_scores(predictions)
        return b"".join([_json_bytes(p) + b"\n" for p in predictions])
    raise ValueError(f"cannot encode for {accept!r}; expected one of {RESPONSE_TYPES}")


def _check_scores(predictions: list[dict[str, object]]) -> None:
    """orjson writes NaN as null: refuse a non-finite score as the stdlib's allow_nan=False
    did (extra fields were checked when decoded; the score is the only number we add)."""
    for p in predictions:
        if not math.isfinite(p["score"]):  # type: ignore[arg-type]
            raise ValueError("a prediction has a non-finite score")


def _json_bytes(value: object) -> bytes:
    """Compact JSON: orjson (a single-record response in ~1 us against the stdlib's ~6 us
    in the request loop), the stdlib where orjson refuses (integers beyond 64 bits, which
    the stdlib parser lets into echoed extra fields)."""
    try:
        return orjson.dumps(value, default=_plain)
    except orjson.JSONEncodeError:
        return _JSON.encode(value).encode()
