"""JSON documents stored small: compact JSON, deflated against a preset dictionary of the
MeetBit Event's shape (its keys and the values most events share), when that is smaller.

A canceled MeetBit Event is ~1.2 KB of JSON; deflate alone brings it to ~540 bytes, and the
dictionary (which holds the key names every event repeats) to ~270. Each stored value begins
with a format byte, so a later dictionary is a new format and old rows stay readable.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["PackedJSON", "pack", "unpack"]

_PLAIN = b"\x00"  # compact JSON as UTF-8
_DEFLATED_V1 = b"\x01"  # raw deflate with _DICTIONARY_V1

# Never edit: every `\x01` value in every ledger was deflated against exactly these bytes. A
# better dictionary is a new format byte beside this one. Built from MeetBit's documented
# Event (cancel response), compact, with the values events commonly hold.
_DICTIONARY_V1 = (
    b'"attendees":[{"email":"","name":"","is_organizer":false,"customer_id":null,'
    b'"calendar_id":null,"status":0},{"email":"","name":"","is_organizer":true,'
    b'"customer_id":null,"calendar_id":null,"status":1}],"location":"","cancel_note":null,'
    b'"canceled_by_id":null,"canceled_by_type":null,"created_at":"T00:00:00Z",'
    b'"updated_at":"T00:00:00Z","deleted_at":null,"public_id":"","provider_event_id":"",'
    b'"customer_id":null,"meeting_link_id":null,"online_conference":{"id":null,'
    b'"online_conference_account_id":null,"public_id":"","title":"","is_public":false,'
    b'"deleted_at":null,"created_at":"T00:00:00Z","updated_at":"T00:00:00Z",'
    b'"backer_event_id":null,"is_occurred":false,"started_at":null,"ended_at":null}}'
    b'{"id":,"calendar_id":,"title":"","body":"","start":"T00:00:00Z","end":"T00:00:00Z",'
)
_LEVEL = 6  # level 9 saves a few bytes more for twice the time


def pack(value: Any) -> bytes:
    """`value` as stored: compact JSON, deflated when that is smaller."""
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, zdict=_DICTIONARY_V1)
    deflated = packer.compress(raw) + packer.flush()
    if len(deflated) < len(raw):
        return _DEFLATED_V1 + deflated
    return _PLAIN + raw


def unpack(stored: bytes) -> Any:
    """The value `pack` stored."""
    kind, body = stored[:1], stored[1:]
    if kind == _DEFLATED_V1:
        unpacker = zlib.decompressobj(-15, zdict=_DICTIONARY_V1)
        body = unpacker.decompress(body) + unpacker.flush()
    elif kind != _PLAIN:
        raise ValueError(f"unknown packed JSON format {kind!r}")
    return json.loads(body)


class PackedJSON(sa.TypeDecorator[Any]):
    """A JSON document stored as `pack` makes it (bytes on every backend); None is NULL."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else pack(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else unpack(bytes(value))
