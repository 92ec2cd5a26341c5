"""Opaque keyset-pagination cursors: the sort key of a page's last row, as URL-safe text."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    """The values of `cursor`, each of its type in `types`; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if (
        not isinstance(values, list)
        or len(values) != len(types)
        # bool is an int subclass; a cursor never holds one.
        or not all(type(v) is t for v, t in zip(values, types, strict=True))
    ):
        raise ValueError("invalid cursor")
    return values


def cursor_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("invalid cursor") from exc
    if value.tzinfo is None:
        raise ValueError("invalid cursor")
    return value
