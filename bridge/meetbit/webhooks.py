"""MeetBit's outbound webhooks: signature verification and the body schemas.

Signature: HMAC-SHA256 keyed with the destination's secret over `<id>.<timestamp>.<raw body>`,
https://meetbit.mintlify.app/webhooks/security ; events and their data,
https://meetbit.mintlify.app/webhooks/events
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

from bridge import jsonbody
from bridge.core.limits import MAX_ID, MAX_LINK_KEY, bounded_key
from bridge.errors import InvalidBody, Unauthorized

__all__ = [
    "EVENT_DELETED",
    "LINK_SCHEDULED",
    "EventDataSchema",
    "EventDeleted",
    "LinkScheduled",
    "MeetBitWebhook",
    "MeetBitWebhookSchema",
    "ScheduledDataSchema",
    "parse_meetbit_webhook",
    "verify_meetbit_webhook",
]

LINK_SCHEDULED = "meeting_links.scheduled"
EVENT_DELETED = "events.deleted"

ID_HEADER = "x-webhook-id"
TIMESTAMP_HEADER = "x-webhook-timestamp"
SIGNATURE_HEADER = "x-webhook-signature"


def verify_meetbit_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300,
) -> str:
    """Check one MeetBit webhook on its raw bytes; returns its `X-Webhook-Id` as the ledger
    remembers it (see `bounded_key`).

    `headers` are lower-cased. Raises `Unauthorized` with reason `missing_header`,
    `bad_timestamp`, `stale_timestamp` or `signature_mismatch`.
    """
    webhook_id = headers.get(ID_HEADER, "").strip()
    timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
    signature = headers.get(SIGNATURE_HEADER, "").strip()
    missing = [
        name
        for name, value in (
            ("X-Webhook-Id", webhook_id),
            ("X-Webhook-Timestamp", timestamp),
            ("X-Webhook-Signature", signature),
        )
        if not value
    ]
    if missing:
        raise Unauthorized(
            f"missing MeetBit webhook header(s): {', '.join(missing)}", reason="missing_header"
        )
    sent_at = _parse_timestamp(timestamp)
    if abs(now - sent_at) > tolerance:
        raise Unauthorized(
            f"X-Webhook-Timestamp is more than {tolerance:g} seconds from the bridge's clock",
            reason="stale_timestamp",
        )
    # The headers as received are signed, not a normalised form of them.
    raw_id, raw_timestamp = headers[ID_HEADER], headers[TIMESTAMP_HEADER]
    message = f"{raw_id}.{raw_timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    if not _signature_matches(signature, digest):
        raise Unauthorized(
            "X-Webhook-Signature does not match the body", reason="signature_mismatch"
        )
    # Hashed when the ledger's column cannot hold it as is: MeetBit retries a webhook it got
    # no 2xx for, and the retry must still be recognised as the same webhook.
    return bounded_key(webhook_id)


def _parse_timestamp(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Unauthorized(
            "X-Webhook-Timestamp is not an ISO 8601 date-time", reason="bad_timestamp"
        ) from None
    if moment.tzinfo is None:
        # MeetBit's examples are all UTC; a bare time is read the same way.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _signature_matches(signature: str, digest: bytes) -> bool:
    # The docs' example looks like lower-case hex but does not say; base64 is accepted too.
    # Both comparisons always run, in constant time, so timing reveals neither.
    given = signature.encode("utf-8", "replace")
    hex_ok = hmac.compare_digest(given.lower(), digest.hex().encode())
    b64_ok = hmac.compare_digest(given, base64.b64encode(digest))
    return hex_ok | b64_ok


# -- bodies -----------------------------------------------------------------------------------


class MeetBitId(fields.Integer):
    """A MeetBit id: documented as a JSON number; a float with a fraction is not an id."""

    def _validated(self, value: Any) -> int:
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def _id(description: str) -> MeetBitId:
    return MeetBitId(
        required=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": description},
    )


@dataclass(frozen=True)
class MeetBitWebhook:
    """Any MeetBit webhook, before its `data` is read by the schema of its event type."""

    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LinkScheduled:
    meeting_link_id: int
    calendar_id: int
    event_id: int
    email: str  # stripped and lower-cased: the link store's key
    name: str | None
    contact_number: str | None


@dataclass(frozen=True)
class EventDeleted:
    calendar_id: int
    event_id: int


class MeetBitWebhookSchema(Schema):
    """The envelope of every MeetBit webhook: `{event, data}`."""

    class Meta:
        unknown = EXCLUDE

    event = fields.String(
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "event type, e.g. meeting_links.scheduled"},
    )
    data = fields.Dict(
        keys=fields.String(),
        required=True,
        metadata={"description": "event attributes; minimal by design"},
    )

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> MeetBitWebhook:
        return MeetBitWebhook(event=data["event"], data=data["data"])


class ScheduledDataSchema(Schema):
    """`data` of `meeting_links.scheduled`: a Customer booked an event through a Meeting Link."""

    class Meta:
        unknown = EXCLUDE

    id = _id("the Meeting Link id")
    event_id = _id("the booked event")
    calendar_id = _id("the calendar of the booked event")
    email = fields.Email(
        required=True,
        validate=validate.Length(max=MAX_LINK_KEY),
        metadata={"description": "the Customer's email"},
    )
    name = fields.String(allow_none=True, load_default=None)
    contact_number = fields.String(
        allow_none=True, load_default=None, metadata={"description": "E.164"}
    )

    @pre_load
    def _strip_email(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("email"), str):
            data = {**data, "email": data["email"].strip()}
        return data

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> LinkScheduled:
        return LinkScheduled(
            meeting_link_id=data["id"],
            calendar_id=data["calendar_id"],
            event_id=data["event_id"],
            email=data["email"].lower(),
            name=data["name"],
            contact_number=data["contact_number"],
        )


class EventDataSchema(Schema):
    """`data` of every `events.*` webhook."""

    class Meta:
        unknown = EXCLUDE

    id = _id("the event")
    calendar_id = _id("the event's calendar")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> EventDeleted:
        return EventDeleted(calendar_id=data["calendar_id"], event_id=data["id"])


_DATA_SCHEMAS: dict[str, type[Schema]] = {
    LINK_SCHEDULED: ScheduledDataSchema,
    EVENT_DELETED: EventDataSchema,
}


def parse_meetbit_webhook(body: bytes) -> LinkScheduled | EventDeleted | MeetBitWebhook:
    """The webhook as a typed value; event types the bridge does not act on stay generic.

    Malformed or too deeply nested JSON raises `BadRequest` (400), a missing or invalid field
    `InvalidBody` (422).
    """
    document = jsonbody.loads(body)
    if not isinstance(document, dict):
        raise InvalidBody(
            "a MeetBit webhook is a JSON object", errors={"_schema": ["not an object"]}
        )
    try:
        webhook: MeetBitWebhook = MeetBitWebhookSchema().load(document)
    except ValidationError as exc:
        raise _invalid(exc, "") from exc
    schema = _DATA_SCHEMAS.get(webhook.event)
    if schema is None:
        return webhook
    try:
        loaded: LinkScheduled | EventDeleted = schema().load(webhook.data)
    except ValidationError as exc:
        raise _invalid(exc, "data.") from exc
    return loaded


def _invalid(exc: ValidationError, prefix: str) -> InvalidBody:
    # Flat schemas: messages are `field -> [message, ...]`.
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    errors = {
        f"{prefix}{field}": [str(m) for m in (value if isinstance(value, list) else [value])]
        for field, value in messages.items()
    }
    return InvalidBody("the MeetBit webhook is missing required fields", errors=errors)
