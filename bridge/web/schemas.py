"""marshmallow schemas of the admin API: query and body validation, and the answers' shape.

The same schemas feed `/openapi.json`. What we own is validated with `unknown = RAISE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from bridge.core.delivery import STATUSES
from bridge.delivery.admin import (
    MAX_ID,
    OUTCOMES,
    PAGE_DEFAULT,
    PAGE_MAX,
    STATES,
    DeliveryQuery,
    PageRequest,
    parse_since,
)
from bridge.delivery.inputs import route_errors, search_errors
from bridge.errors import InvalidBody, InvalidQuery

__all__ = [
    "DeliveryListSchema",
    "DeliveryQuerySchema",
    "DeliverySchema",
    "LinkBodySchema",
    "LinkListSchema",
    "LinkPageQuerySchema",
    "LinkEntrySchema",
    "LinkPageSchema",
    "LinkQuerySchema",
    "LinkSchema",
    "Since",
    "load_body",
    "load_query",
]


def _messages(exc: ValidationError) -> dict[str, list[str]]:
    """A marshmallow error on a flat schema as `field -> [message, ...]`."""
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return {
        str(name): [str(m) for m in (value if isinstance(value, list) else [value])]
        for name, value in messages.items()
    }


def load_query(schema: Schema, args: Mapping[str, str], detail: str) -> Any:
    """The query string loaded by `schema`; a 422 `invalid-query` problem naming each field."""
    try:
        return schema.load(dict(args))
    except ValidationError as exc:
        raise InvalidQuery(detail, errors=_messages(exc)) from exc


def load_body(schema: Schema, data: Any, detail: str) -> Any:
    """A JSON body loaded by `schema`; a 422 `invalid-body` problem naming each field."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise InvalidBody(detail, errors=_messages(exc)) from exc


class Since(fields.Field[datetime]):
    """ISO 8601 (UTC when no offset is given) or an age like `30m`, `2h`, `7d`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str):
            raise ValidationError("expected a string")
        try:
            return parse_since(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def _route_name(value: str) -> None:
    errors = route_errors(value)
    if errors:
        raise ValidationError(errors)


def _search(value: str) -> None:
    errors = search_errors(value)
    if errors:
        raise ValidationError(errors)


def _id(description: str, **kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={"description": description},
        **kwargs,
    )


def _cursor() -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={"description": "`next_cursor` of the previous page"},
    )


def _limit(what: str) -> fields.Integer:
    return fields.Integer(
        load_default=PAGE_DEFAULT,
        validate=validate.Range(min=1, max=PAGE_MAX),
        metadata={"description": f"{what} per page, 1..{PAGE_MAX} (default {PAGE_DEFAULT})"},
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
    request_id = fields.String(
        attribute="x_request_id",
        allow_none=True,
        metadata={"description": "X-Request-Id of the webhook that recorded it (sent to MeetBit)"},
    )
    url = fields.Function(
        lambda d: f"/admin/deliveries/{d.id}", metadata={"description": "this resource"}
    )


class WriteBackSchema(Schema):
    """One write-back of a delivery: the outcome put on the sender's record."""

    id = fields.String(metadata={"description": "`wb_...`; a signed webhook's `webhook-id`"})
    to = fields.String(metadata={"description": "the sink: hubspot-note, zendesk-comment..."})
    record = fields.String(metadata={"description": "the record written to (deal, ticket id)"})
    outcome = fields.String(metadata={"description": "the delivery outcome it reports"})
    status = fields.String(
        validate=validate.OneOf([s for s in STATUSES if s != "ignored"]),
        metadata={"description": "pending, in_flight, succeeded, failed or dead"},
    )
    attempts = fields.Integer(metadata={"description": "attempts made"})
    last_error = fields.String(allow_none=True, metadata={"description": "last failure, text"})
    created_id = fields.String(
        allow_none=True, metadata={"description": "the note, comment or Task id the vendor made"}
    )
    next_attempt_at = fields.DateTime(
        allow_none=True, metadata={"description": "when the worker tries again"}
    )
    updated_at = fields.DateTime(metadata={"description": "ISO 8601, UTC"})


class DeliveryDetailSchema(DeliverySchema):
    """One delivery with its write-backs."""

    write_backs = fields.List(
        fields.Nested(WriteBackSchema),
        metadata={"description": "the route's write-backs made for this delivery's outcome"},
    )


class DeliveryListSchema(Schema):
    """One page of deliveries, newest first."""

    deliveries = fields.List(fields.Nested(DeliverySchema), attribute="items")
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "pass as `cursor` for the next page; null: last"}
    )


class DeliveryQuerySchema(Schema):
    """Filters of `GET /admin/deliveries` (the same as `meetbit-bridge deliveries list`)."""

    class Meta:
        unknown = RAISE

    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "only this status"}
    )
    route = fields.String(validate=_route_name, metadata={"description": "only this route"})
    since = Since(
        metadata={
            "description": "created at or after: ISO 8601 (UTC when no offset is given) or an "
            "age like `30m`, `2h`, `7d`"
        }
    )
    outcome = fields.String(
        validate=validate.OneOf(OUTCOMES), metadata={"description": "only this outcome"}
    )
    state = fields.String(
        validate=validate.OneOf(STATES),
        metadata={
            "description": "`final`: no further MeetBit call will be made; `retrying`: failed "
            "transiently, the worker tries again"
        },
    )
    search = fields.String(
        validate=_search,
        metadata={
            "description": "a delivery id, an idempotency key, a calendar or event id, or an "
            "email (the deliveries of the events linked to it)"
        },
    )
    cursor = _cursor()
    limit = _limit("deliveries")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> DeliveryQuery:
        return DeliveryQuery(**data)


# -- links ------------------------------------------------------------------------------------


class LinkBodySchema(Schema):
    """Body of `PUT /admin/links/<key>`."""

    class Meta:
        unknown = RAISE

    calendar_id = _id("MeetBit calendar of the event", required=True)
    event_id = _id("MeetBit event to cancel for this key", required=True)


class LinkPageQuerySchema(Schema):
    """Query of `GET /admin/links`: one page of every link, ordered by key."""

    class Meta:
        unknown = RAISE

    cursor = _cursor()
    limit = _limit("links")

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> PageRequest:
        return PageRequest(**data)


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


class LinkEntrySchema(LinkSchema):
    """One link of the whole store: its key and one event."""

    key = fields.String(metadata={"description": "emails are stored lower-cased"})


class LinkPageSchema(Schema):
    """One page of every link, ordered by key, then calendar and event."""

    links = fields.List(fields.Nested(LinkEntrySchema), attribute="items")
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "pass as `cursor` for the next page; null: last"}
    )
