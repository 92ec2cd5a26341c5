"""MeetBit's Event resource, its response envelope and the cancel body as marshmallow schemas
(for the OpenAPI document and the sandbox's contract test), and `canceled_event`, the client's
check of a Cancel Event answer.

The schemas describe what MeetBit returns without re-shaping it: the bridge passes the event on
exactly as received. Both renderings of the Cancel Event page are accepted (the newer one adds
`attendees[].status` and `canceled_by_type`); unknown keys are dropped because MeetBit grows.
https://meetbit.mintlify.app/api-reference/events/cancel-event
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from bridge.core.limits import NOTE_MAX

__all__ = [
    "CANCEL_NOTE_MAX",
    "AttendeeSchema",
    "CancelRequestSchema",
    "EventEnvelopeSchema",
    "EventSchema",
    "OnlineConferenceSchema",
    "canceled_event",
]

CANCEL_NOTE_MAX = NOTE_MAX


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


def canceled_event(payload: Any, *, calendar_id: int, event_id: int) -> tuple[str, dict[str, Any]]:
    """`(message, event)` from a Cancel Event answer, the event exactly as MeetBit sent it.

    Checks only what the bridge relies on: `message` a string, `data` an object whose `id` and
    `calendar_id` are the integers asked for. The other Event fields are passed through
    unchecked (the schemas above describe them for the OpenAPI document and the sandbox's
    contract test): loading a sandbox answer with `EventEnvelopeSchema` takes ~180 µs, this
    check under 1 µs, on every cancel. Raises ValueError saying what is wrong.
    """
    if type(payload) is not dict:
        raise ValueError("a body that is not a JSON object")
    message, event = payload.get("message"), payload.get("data")
    if type(message) is not str:
        raise ValueError("no string `message`")
    if type(event) is not dict:
        raise ValueError("no Event object in `data`")
    for field, asked in (("calendar_id", calendar_id), ("id", event_id)):
        got = event.get(field)
        # Exactly int: bool is an int subclass, and "12" is not what MeetBit documents.
        if type(got) is not int:
            raise ValueError(f"an Event without an integer `{field}` ({type(got).__name__})")
        if got != asked:
            raise ValueError(f"another Event: `{field}` {got}, not the {asked} asked for")
    return message, event
