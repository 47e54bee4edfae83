"""Keyed hashing of direct identifiers (card tokens, customer ids) before anything is stored.

A plain hash of a card number can be brute-forced (the space of valid numbers is small), so
identifiers are replaced by ``"hmac-sha256:" + hex(HMAC-SHA256(secret, value))[:32]``. The
same value with the same secret always gives the same token, so captured records can still be
joined and counted per card; without the secret the token reveals nothing.

Invariants:
- An empty field list makes every method the identity (the fast path when nothing is named).
- A non-empty field list needs a non-empty secret (``ValueError`` otherwise).
- ``redact_text`` never returns a JSON body it could not parse: with identifiers configured,
  such a body becomes ``WITHHELD``, so a card number in a malformed request never reaches
  disk. CSV and numeric arrays carry no named fields and pass unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence

PREFIX = "hmac-sha256:"
TOKEN_HEX_CHARS = 32
# a JSON string, so a withheld body is still valid JSON wherever a JSON body was expected
WITHHELD = '"<unparseable body withheld>"'

JSON_TYPES = frozenset({"application/json"})
JSON_LINES_TYPES = frozenset(
    {
        "application/jsonlines",
        "application/x-jsonlines",
        "application/jsonl",
        "application/json-lines",
    }
)
CSV_TYPES = frozenset({"text/csv", "application/csv"})


def media_type(content_type: str) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_type(content_type: str) -> bool:
    """True for JSON and JSON-lines bodies (``+json`` suffixes included)."""
    media = media_type(content_type)
    return media in JSON_TYPES or media in JSON_LINES_TYPES or media.endswith("+json")


class IdentifierHasher:
    """Replaces the named fields of JSON records by their keyed hash."""

    def __init__(self, fields: Sequence[str], secret: bytes) -> None:
        if isinstance(fields, str):
            raise TypeError(f"fields must be a sequence of names, got the string {fields!r}")
        bad = [f for f in fields if not isinstance(f, str) or not f]
        if bad:
            raise ValueError(f"identifier field names must be non-empty strings, got {bad!r}")
        if fields and not secret:
            raise ValueError(
                f"identifier fields {list(fields)!r} need a non-empty HMAC secret: "
                "identifiers are replaced by a keyed hash, never a plain one"
            )
        self.fields = frozenset(fields)
        # keyed once; each token copies this state instead of re-keying
        self._mac = hmac.new(secret, digestmod=hashlib.sha256) if fields else None

    @property
    def active(self) -> bool:
        return self._mac is not None

    def token(self, value: object) -> str:
        """The keyed hash of one identifier value."""
        if self._mac is None:
            raise ValueError("no identifier fields configured, so there is no key to hash with")
        mac = self._mac.copy()
        mac.update(_identifier_text(value).encode())
        return PREFIX + mac.hexdigest()[:TOKEN_HEX_CHARS]

    def redact(self, obj: dict[str, object]) -> dict[str, object]:
        """A copy of ``obj`` with each top-level identifier field replaced by its token."""
        if self._mac is None:
            return obj
        return {k: self.token(v) if k in self.fields else v for k, v in obj.items()}

    def redact_text(self, text: str, content_type: str) -> str:
        """A raw body with its identifiers hashed, ready to be stored.

        JSON bodies (``{"instances": [{...}]}``, a list of objects, a single object, JSON
        lines) are parsed and every object met at any depth is redacted; a body with no
        identifier in it is returned unchanged, byte for byte. A JSON body that does not
        parse becomes ``WITHHELD``. Other content types are returned unchanged.
        """
        if self._mac is None or not is_json_type(content_type):
            return text
        try:
            return self._redact_json(text)
        except (ValueError, RecursionError):
            return WITHHELD

    def _redact_json(self, text: str) -> str:
        try:
            documents = [json.loads(text)]
            lines = False
        except ValueError:
            # JSON lines (batch transform sends them under either content type)
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
            lines = True
            if not documents:
                raise
        redacted = [self._walk(doc) for doc in documents]
        if all(new is old for new, old in zip(redacted, documents, strict=True)):
            return text
        if lines:
            return "\n".join(_dumps(doc) for doc in redacted) + "\n"
        return _dumps(redacted[0])

    def _walk(self, node: object) -> object:
        """``node`` with identifiers hashed; the same object when nothing changed."""
        if isinstance(node, dict):
            changed = False
            out: dict[str, object] = {}
            for key, value in node.items():
                new = self.token(value) if key in self.fields else self._walk(value)
                changed = changed or new is not value
                out[key] = new
            return out if changed else node
        if isinstance(node, list):
            items = [self._walk(item) for item in node]
            if any(new is not old for new, old in zip(items, node, strict=True)):
                return items
            return node
        return node


def _identifier_text(value: object) -> str:
    # numbers and strings as written ("4111..." and 4111... give one token); bool is not a
    # number here, and everything else is hashed from its canonical JSON text
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"))
