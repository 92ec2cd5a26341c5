"""marshmallow schemas of the admin API: query and body validation, and the answers' shape.

The same schemas feed `/openapi.json`. What we own is validated with `unknown = RAISE`.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from bridge.errors import InvalidBody
from bridge.ledger import STATUSES

__all__ = [
    "DeliveryListSchema",
    "DeliveryQuerySchema",
    "DeliverySchema",
    "LinkBodySchema",
    "LinkListSchema",
    "LinkQuerySchema",
    "LinkSchema",
    "invalid_body",
    "link_key",
]

# Ledger column widths: link keys, BIGINT ids.
MAX_LINK_KEY = 320
MAX_ID = 2**63 - 1
MAX_PAGE = 200

# `+01:00` in an unencoded query string arrives as ` 01:00`.
_OFFSET_AS_SPACE = re.compile(r" (\d{2}(?::?\d{2})?)$")


def link_key(key: str) -> str:
    """Link keys that are emails are stored stripped and lower-cased, as the mapper looks
    them up (`target.customer_email`); other keys are kept as given."""
    return key.strip().lower() if "@" in key else key


def invalid_body(exc: ValidationError, detail: str) -> InvalidBody:
    """A marshmallow error on a flat schema as a 422 problem with `errors` by field."""
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    errors = {
        str(name): [str(m) for m in (value if isinstance(value, list) else [value])]
        for name, value in messages.items()
    }
    return InvalidBody(detail, errors=errors)


def _id(description: str, **kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": description},
        **kwargs,
    )


# -- deliveries -------------------------------------------------------------------------------


class DeliverySchema(Schema):
    """One delivery as the ledger holds it (one MeetBit cancel command and its history)."""

    id = fields.String(metadata={"description": "unguessable delivery id, `dlv_...`"})
    route = fields.String(metadata={"description": "the route the webhook arrived on"})
    idempotency_key = fields.String(
        metadata={"description": "the sender's key; with route and seq, unique"}
    )
    seq = fields.Integer(metadata={"description": "position of this cancel within its webhook"})
    calendar_id = fields.Integer(allow_none=True, metadata={"description": "MeetBit calendar"})
    event_id = fields.Integer(allow_none=True, metadata={"description": "MeetBit event"})
    note = fields.String(allow_none=True, metadata={"description": "the cancel note sent"})
    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "delivery state"}
    )
    outcome = fields.String(
        allow_none=True,
        metadata={
            "description": "canceled, already_canceled, ignored, not_found, mapping_error, "
            "rejected or failed; null while not final"
        },
    )
    final = fields.Boolean(
        metadata={"description": "true once no further MeetBit call will be made"}
    )
    attempts = fields.Integer(metadata={"description": "MeetBit calls made"})
    max_attempts = fields.Integer(metadata={"description": "calls allowed before it is dead"})
    created_at = fields.DateTime(metadata={"description": "ISO 8601, UTC"})
    updated_at = fields.DateTime(metadata={"description": "ISO 8601, UTC"})
    expires_at = fields.DateTime(metadata={"description": "dead if not delivered by then"})
    next_attempt_at = fields.DateTime(
        allow_none=True, metadata={"description": "when the worker tries again"}
    )
    lease_until = fields.DateTime(
        allow_none=True, metadata={"description": "while in flight: when its claim lapses"}
    )
    last_error = fields.String(allow_none=True, metadata={"description": "last failure, text"})
    meetbit_status = fields.Integer(
        allow_none=True, metadata={"description": "HTTP status of MeetBit's last answer"}
    )
    event = fields.Dict(
        allow_none=True, metadata={"description": "the MeetBit Event as returned by the cancel"}
    )
    error = fields.Dict(
        allow_none=True, metadata={"description": "structured error: reason, errors, detail"}
    )
    sent = fields.Boolean(metadata={"description": "a call may have reached MeetBit"})
    url = fields.Function(
        lambda d: f"/admin/deliveries/{d.id}", metadata={"description": "this resource"}
    )


class DeliveryListSchema(Schema):
    """One page of deliveries, newest first."""

    deliveries = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "pass as `cursor` for the next page; null: last"}
    )


class DeliveryQuerySchema(Schema):
    """Filters of `GET /admin/deliveries`."""

    class Meta:
        unknown = RAISE

    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "only this status"}
    )
    route = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "only this route"}
    )
    since = fields.AwareDateTime(
        default_timezone=UTC,
        metadata={"description": "ISO 8601; created at or after (UTC when no offset is given)"},
    )
    cursor = fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={"description": "`next_cursor` of the previous page"},
    )
    limit = fields.Integer(
        load_default=50,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": f"page size, 1..{MAX_PAGE}"},
    )

    @pre_load
    def _restore_plus(self, data: Any, **kwargs: Any) -> Any:
        since = data.get("since") if isinstance(data, dict) else None
        if isinstance(since, str):
            data = {**data, "since": _OFFSET_AS_SPACE.sub(r"+\1", since.strip())}
        return data


# -- links ------------------------------------------------------------------------------------


class LinkBodySchema(Schema):
    """Body of `PUT /admin/links/<key>`."""

    class Meta:
        unknown = RAISE

    calendar_id = _id("MeetBit calendar of the event", required=True)
    event_id = _id("MeetBit event to cancel for this key", required=True)


class LinkQuerySchema(Schema):
    """Query of `DELETE /admin/links/<key>`: narrow the removal to one calendar or event."""

    class Meta:
        unknown = RAISE

    calendar_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "remove only links to this calendar"},
    )
    event_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": "remove only links to this event"},
    )


class LinkSchema(Schema):
    """One event stored under a link key."""

    calendar_id = fields.Integer(metadata={"description": "MeetBit calendar"})
    event_id = fields.Integer(metadata={"description": "MeetBit event"})
    created_at = fields.DateTime(metadata={"description": "ISO 8601, UTC"})


class LinkListSchema(Schema):
    """Every event stored under one key (an email, or any operator key)."""

    key = fields.String(metadata={"description": "emails are stored lower-cased"})
    links = fields.List(fields.Nested(LinkSchema))
