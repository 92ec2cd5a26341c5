"""JSON bodies the bridge parses (senders' webhooks, the admin API, MeetBit's own), bounded before
any recursive parser sees them, and the characters no ledger column can store. Standard
library and `bridge.errors` only, so every layer that reads JSON may import it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from bridge.errors import BadRequest

__all__ = ["MAX_DEPTH", "check_depth", "loads", "parse", "unstorable"]

# Nested objects and arrays a body may hold (the top level counts as one): far below Python's
# recursion limit, which a 10k-deep `[[[...]]]` would otherwise reach inside `json.loads`.
MAX_DEPTH = 64

# What counts for nesting: the four brackets, and quotes, so that strings are skipped whole.
_NESTING = re.compile(r'[\[\]{}"]')
# The rest of a string after its opening quote. Possessive, so it never backtracks: the scan
# stays linear in the body's length whatever quotes and backslashes a client piles up.
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
# PostgreSQL text refuses NUL, and an unpaired surrogate cannot be encoded as UTF-8; SQLite
# would take both, so they are refused before either ledger sees them.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """Whether `text` holds a character no ledger column can store (NUL, unpaired surrogate)."""
    return _UNSTORABLE.search(text) is not None


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON text nested deeper than `limit` (400, reason `json_too_deep`)."""
    if text.count("[") + text.count("{") <= limit:
        return  # cannot be deeper than its number of opening brackets
    depth = position = 0
    while (match := _NESTING.search(text, position)) is not None:
        token, position = match.group(), match.end()
        if token == '"':
            rest = _STRING_REST.match(text, position)
            if rest is None:
                return  # an unterminated string: invalid JSON, which the parser reports
            position = rest.end()
        elif token in "[{":
            depth += 1
            if depth > limit:
                raise BadRequest(
                    f"the JSON body nests deeper than {limit} levels", reason="json_too_deep"
                )
        else:
            depth -= 1


def _constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    # `1e999` is JSON syntax but becomes inf: refused like the NaN and Infinity literals.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def loads(body: bytes) -> Any:
    """The body as JSON (any of the encodings `json.loads` detects); 400 `bad_json` when it is
    not JSON, 400 `json_too_deep` when it nests deeper than MAX_DEPTH."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not valid JSON: not UTF-8", reason="bad_json") from exc
    return parse(text)


def parse(text: str) -> Any:
    """JSON text, its nesting checked first; NaN, Infinity and numbers that overflow to
    infinity refused (400 `bad_json`, or `json_too_deep`)."""
    check_depth(text)
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON: {exc.msg} at {exc.pos}", reason="bad_json"
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise BadRequest(f"the body is not valid JSON: {exc}", reason="bad_json") from exc
