"""MeetBit's answers, word for word: the messages, the key check, Laravel's rule on the cancel
note, and the two body types (text/plain for MeetBit's own errors, JSON for the rest).

https://meetbit.mintlify.app/api-reference/events/cancel-event
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from flask import Response

__all__ = [
    "ACCESS_DENIED",
    "INVALID_KEY",
    "NOTE_MAX",
    "NOT_FOUND",
    "TOO_MANY",
    "json_response",
    "keys_match",
    "note_errors",
    "text_response",
    "validation_message",
]

NOTE_MAX = 255
INVALID_KEY = "Invalid or missing access key."
ACCESS_DENIED = "Access Denied."
NOT_FOUND = "Resource object does not exist."
TOO_MANY = "Too many requests."


def text_response(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, headers=headers, mimetype="text/plain")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def keys_match(key_id: str, key_secret: str, want_id: str, want_secret: str) -> bool:
    """Both halves compared in constant time; an empty one never matches."""
    id_ok = hmac.compare_digest(key_id.encode(), want_id.encode())
    secret_ok = hmac.compare_digest(key_secret.encode(), want_secret.encode())
    return bool(key_id and key_secret and id_ok and secret_ok)


def note_errors(payload: Any) -> list[str]:
    """MeetBit's (Laravel's) `required|string|max:255` rule on `cancel_note`."""
    note = payload.get("cancel_note") if isinstance(payload, dict) else None
    if isinstance(note, str):
        # Laravel trims strings and turns empty ones into null before validating.
        note = note.strip() or None
    if note is None:
        return ["The cancel note field is required."]
    if not isinstance(note, str):
        return ["The cancel note field must be a string."]
    if len(note) > NOTE_MAX:
        return [f"The cancel note field must not be greater than {NOTE_MAX} characters."]
    return []


def validation_message(errors: dict[str, list[str]]) -> str:
    """Laravel's summary: the first error, plus `(and N more error[s])`."""
    messages = [m for ms in errors.values() for m in ms]
    more = len(messages) - 1
    if more <= 0:
        return messages[0]
    return f"{messages[0]} (and {more} more error{'s' if more > 1 else ''})"
