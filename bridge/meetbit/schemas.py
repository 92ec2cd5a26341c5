"""marshmallow schemas for MeetBit's Event resource, its response envelope and the cancel body.

They validate what MeetBit returns without re-shaping it: the bridge passes the event on
exactly as received. Both renderings of the Cancel Event page are accepted (the newer one adds
`attendees[].status` and `canceled_by_type`); unknown keys are dropped because MeetBit grows.
https://meetbit.mintlify.app/api-reference/events/cancel-event
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

__all__ = [
    "CANCEL_NOTE_MAX",
    "AttendeeSchema",
    "CancelRequestSchema",
    "EventEnvelopeSchema",
    "EventSchema",
    "OnlineConferenceSchema",
    "plainly_valid",
]

CANCEL_NOTE_MAX = 255


def _datetime(description: str) -> fields.String:
    # Kept as strings (ISO 8601, `Z` in every example) so the event is passed through exactly
    # as MeetBit sent it; parsing would only risk rejecting a harmless format variation.
    return fields.String(
        allow_none=True, metadata={"description": description, "format": "date-time"}
    )


def _int(description: str) -> fields.Integer:
    return fields.Integer(allow_none=True, metadata={"description": description})


def _str(description: str) -> fields.String:
    return fields.String(allow_none=True, metadata={"description": description})


def _bool(description: str) -> fields.Boolean:
    return fields.Boolean(allow_none=True, metadata={"description": description})


class AttendeeSchema(Schema):
    """One attendee of an Event."""

    class Meta:
        unknown = EXCLUDE

    # A string, not fields.Email: an address MeetBit accepted must not fail the bridge.
    email = fields.String(
        allow_none=True, metadata={"description": "Attendee email address.", "format": "email"}
    )
    name = _str("Attendee display name.")
    is_organizer = _bool("Whether this attendee organises the event.")
    customer_id = _int("MeetBit Customer id of the attendee, if any.")
    calendar_id = _int("MeetBit Calendar id of the attendee, if any.")
    status = _int("Attendee status code (newer rendering only; meaning undocumented).")


class OnlineConferenceSchema(Schema):
    """The MeetBit Room (online conference) attached to an Event."""

    class Meta:
        unknown = EXCLUDE

    id = _int("Online conference id.")
    online_conference_account_id = _int("Conference account that owns the room.")
    public_id = _str("Public id of the room.")
    title = _str("Room title.")
    is_public = _bool("Whether the room is public.")
    deleted_at = _datetime("When the room was deleted.")
    created_at = _datetime("When the room was created.")
    updated_at = _datetime("When the room was last updated.")
    backer_event_id = _int("Event backing the room.")
    is_occurred = _bool("Whether the conference took place.")
    started_at = _datetime("When the conference started.")
    ended_at = _datetime("When the conference ended.")


class EventSchema(Schema):
    """A MeetBit Event resource object, as returned by Cancel Event."""

    class Meta:
        unknown = EXCLUDE

    id = fields.Integer(required=True, metadata={"description": "Event id."})
    calendar_id = fields.Integer(required=True, metadata={"description": "Calendar id."})
    title = _str("Event title.")
    body = _str("Event description.")
    start = _datetime("Start time (ISO 8601, UTC).")
    end = _datetime("End time (ISO 8601, UTC).")
    attendees = fields.List(
        fields.Nested(AttendeeSchema),
        allow_none=True,
        metadata={"description": "Attendees of the event."},
    )
    location = _str("Event location.")
    cancel_note = _str("The note given when the event was canceled.")
    canceled_by_id = _int("Id of whoever canceled the event.")
    canceled_by_type = _str(
        "Model class of whoever canceled the event, e.g. `App\\Models\\Tenant\\User` "
        "(newer rendering only)."
    )
    created_at = _datetime("When the event was created.")
    updated_at = _datetime("When the event was last updated.")
    deleted_at = _datetime("When the event was canceled (soft-deleted).")
    public_id = _str("Public id of the event.")
    provider_event_id = _str("The event's id at the external calendar provider.")
    customer_id = _int("MeetBit Customer linked to the event.")
    meeting_link_id = _int("Meeting Link the event was booked through.")
    online_conference = fields.Nested(
        OnlineConferenceSchema,
        allow_none=True,
        metadata={"description": "The online conference (MeetBit Room) of the event."},
    )


class EventEnvelopeSchema(Schema):
    """MeetBit's success envelope around an Event: `{message, data}`."""

    class Meta:
        unknown = EXCLUDE

    message = fields.String(required=True, metadata={"description": "Human-readable result."})
    data = fields.Nested(
        EventSchema, required=True, metadata={"description": "An Event resource object."}
    )


class CancelRequestSchema(Schema):
    """The body of `POST /calendars/{calendar_id}/events/{event_id}/cancel`."""

    class Meta:
        unknown = RAISE

    cancel_note = fields.String(
        required=True,
        validate=validate.Length(min=1, max=CANCEL_NOTE_MAX),
        metadata={"description": "Why the event is canceled (1 to 255 characters)."},
    )


Check = Callable[[Any], bool]


def plainly_valid(schema: Schema) -> Check:
    """A check derived from `schema`'s own declarations that is True only for data whose every
    field already has exactly the plain JSON type declared (`str`, `int`, `bool`, objects,
    lists; None where allowed), which `schema.load` accepts as it is.

    False means "not plainly valid": load it with marshmallow, which decides (it also accepts
    e.g. `"12"` for an Integer) and explains. Validating MeetBit's Event with marshmallow costs
    ~15 % of a whole cancel's CPU in the bridge; nearly every answer is plainly valid. Fields,
    options or hooks this does not understand raise TypeError here, at import, so that it can
    never pass what marshmallow would reject.
    """
    schema_name = type(schema).__name__
    # marshmallow's registry of @pre_load/@post_load/@validates... methods (a defaultdict of
    # lists, so look for a non-empty one).
    if any(getattr(type(schema), "_hooks", {}).values()):
        raise TypeError(f"{schema_name} has processing hooks")
    if schema.unknown == RAISE:
        raise TypeError(f"{schema_name} rejects unknown fields")
    checks = [
        (name, field.required, _field_check(field, f"{schema_name}.{name}"))
        for name, field in schema.fields.items()
    ]

    def check(data: Any) -> bool:
        if type(data) is not dict:
            return False
        for name, required, field_ok in checks:
            if name in data:
                if not field_ok(data[name]):
                    return False
            elif required:
                return False
        return True

    return check


def _field_check(field: fields.Field[Any], where: str) -> Check:
    """The check of one field, a list's items included."""
    if field.validators or field.data_key or field.load_only or field.dump_only:
        raise TypeError(f"{where}: unsupported field options")
    kind: Check
    if type(field) is fields.String:
        kind = _is(str)
    elif type(field) is fields.Integer:
        kind = _is(int)  # exactly int: bool is an int subclass, and marshmallow rejects it
    elif type(field) is fields.Boolean:
        kind = _is(bool)
    elif type(field) is fields.Nested and not (
        field.many or field.only or field.exclude or field.unknown
    ):
        assert isinstance(field.schema, Schema)
        kind = plainly_valid(field.schema)
    elif type(field) is fields.List:
        item = _field_check(field.inner, where + "[]")

        def kind(value: Any) -> bool:
            return type(value) is list and all(item(v) for v in value)
    else:
        raise TypeError(f"{where}: {type(field).__name__} is not supported")
    if field.allow_none:
        return lambda value: value is None or kind(value)
    return kind


def _is(python_type: type) -> Check:
    return lambda value: type(value) is python_type
