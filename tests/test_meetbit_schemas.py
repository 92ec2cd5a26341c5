"""MeetBit's Event schemas accept both renderings of the Cancel Event page and tolerate drift."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from bridge.meetbit.schemas import (
    AttendeeSchema,
    CancelRequestSchema,
    EventEnvelopeSchema,
    EventSchema,
    OnlineConferenceSchema,
    plainly_valid,
)
from bridge.sandbox import generate_event

# The older rendering, as on the Cancel Event page (no attendees[].status, no canceled_by_type).
OLDER: dict[str, Any] = {
    "id": 123,
    "calendar_id": 123,
    "title": "<string>",
    "start": "2023-11-07T05:31:56Z",
    "end": "2023-11-07T05:31:56Z",
    "attendees": [
        {
            "email": "jsmith@example.com",
            "name": "<string>",
            "is_organizer": True,
            "customer_id": 123,
            "calendar_id": 123,
        }
    ],
    "body": "<string>",
    "location": "<string>",
    "cancel_note": "<string>",
    "canceled_by_id": 123,
    "created_at": "2023-11-07T05:31:56Z",
    "updated_at": "2023-11-07T05:31:56Z",
    "deleted_at": "2023-11-07T05:31:56Z",
    "public_id": "<string>",
    "provider_event_id": "<string>",
    "customer_id": 123,
    "meeting_link_id": 123,
    "online_conference": {
        "id": 123,
        "online_conference_account_id": 123,
        "public_id": "<string>",
        "title": "<string>",
        "is_public": True,
        "deleted_at": "2023-11-07T05:31:56Z",
        "created_at": "2023-11-07T05:31:56Z",
        "updated_at": "2023-11-07T05:31:56Z",
        "backer_event_id": 123,
        "is_occurred": True,
        "started_at": "2023-11-07T05:31:56Z",
        "ended_at": "2023-11-07T05:31:56Z",
    },
}


def newer() -> dict[str, Any]:
    """The newer rendering: adds attendees[].status and canceled_by_type."""
    event = copy.deepcopy(OLDER)
    event["attendees"][0]["status"] = 0
    event["canceled_by_type"] = "App\\Models\\Tenant\\User"
    return event


@pytest.mark.parametrize("event", [OLDER, newer()], ids=["older", "newer"])
def test_both_renderings_load_unchanged(event: dict[str, Any]) -> None:
    loaded = EventSchema().load(event)
    # Date-times stay the strings MeetBit sent, so the event passes through exactly.
    assert loaded == event
    assert loaded["start"] == "2023-11-07T05:31:56Z"


def test_envelope_wraps_the_event() -> None:
    loaded = EventEnvelopeSchema().load({"message": "Event canceled.", "data": newer()})
    assert loaded["message"] == "Event canceled."
    assert loaded["data"]["canceled_by_type"] == "App\\Models\\Tenant\\User"
    with pytest.raises(ValidationError) as info:
        EventEnvelopeSchema().load({"message": "ok"})
    assert "data" in info.value.messages


def test_nulls_are_tolerated_everywhere_but_the_ids() -> None:
    event: dict[str, Any] = {name: None for name in EventSchema().fields}
    event.update(id=5, calendar_id=6)
    assert EventSchema().load(event)["id"] == 5
    attendee = {name: None for name in AttendeeSchema().fields}
    room = {name: None for name in OnlineConferenceSchema().fields}
    event.update(attendees=[attendee], online_conference=room)
    assert EventSchema().load(event)["attendees"] == [attendee]


def test_unknown_keys_are_dropped_at_every_level() -> None:
    event = newer()
    event["recurrence"] = {"rule": "FREQ=WEEKLY"}
    event["attendees"][0]["timezone"] = "Europe/Paris"
    event["online_conference"]["recording_url"] = "https://rooms.example/r/1"
    loaded = EventSchema().load(event)
    assert "recurrence" not in loaded
    assert "timezone" not in loaded["attendees"][0]
    assert "recording_url" not in loaded["online_conference"]


@pytest.mark.parametrize("field", ["id", "calendar_id"])
def test_missing_or_null_ids_are_rejected(field: str) -> None:
    event = newer()
    del event[field]
    with pytest.raises(ValidationError) as info:
        EventSchema().load(event)
    assert field in info.value.messages
    event[field] = None
    with pytest.raises(ValidationError):
        EventSchema().load(event)


def test_wrong_types_are_rejected() -> None:
    event = newer()
    event["attendees"] = "everyone"
    with pytest.raises(ValidationError) as info:
        EventSchema().load(event)
    assert "attendees" in info.value.messages


def test_sandbox_events_match_the_schema() -> None:
    event = generate_event(12, 345)
    assert EventSchema().load(event) == event


def test_cancel_request_bounds() -> None:
    schema = CancelRequestSchema()
    assert schema.load({"cancel_note": "x" * 255}) == {"cancel_note": "x" * 255}
    for bad in ({}, {"cancel_note": ""}, {"cancel_note": "x" * 256}, {"cancel_note": 5}):
        with pytest.raises(ValidationError) as info:
            schema.load(bad)
        assert "cancel_note" in info.value.messages
    with pytest.raises(ValidationError):
        schema.load({"cancel_note": "ok", "notify": True})


def test_schemas_feed_an_openapi_document() -> None:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec("t", "1", "3.1.0", plugins=[MarshmallowPlugin()])
    spec.components.schema("Event", schema=EventSchema)
    properties = spec.to_dict()["components"]["schemas"]["Event"]["properties"]
    assert properties["deleted_at"]["description"].startswith("When the event was canceled")
    assert properties["start"]["format"] == "date-time"
    assert set(spec.to_dict()["components"]["schemas"]["Event"]["required"]) == {
        "id",
        "calendar_id",
    }


# Values of every JSON type, and strings and floats marshmallow turns into numbers or booleans.
ODD_VALUES: list[Any] = [
    None, 0, 7, -3, 2.0, 2.5, True, False, "", "12", "yes", "2023-11-07T05:31:56Z",
    [], [1], {}, {"id": 1}, [{"email": "a@example.com"}],
]  # fmt: skip


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and list index inside `value`, as paths from the top."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        found.append((*path, key))
        if isinstance(inner, dict | list):
            found += _paths(inner, (*path, key))
    return found


def _mutated(envelope: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The envelope with one to three values replaced by odd ones, or deleted."""
    copied = copy.deepcopy(envelope)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(copied))
        parent = copied
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        if not _paths(copied):
            break
    return copied


def test_plainly_valid_answers_skip_marshmallow_and_the_rest_still_meet_it() -> None:
    """The quick check never passes what marshmallow rejects; real answers pass it; anything
    it does not pass is left to marshmallow, which still accepts e.g. "12" for an id."""
    envelope_schema = EventEnvelopeSchema()
    quick = plainly_valid(envelope_schema)
    originals = [OLDER, newer(), generate_event(12, 345), generate_event(7, 2)]
    for event in originals:
        assert quick({"message": "Event canceled.", "data": event})
    rng = random.Random(20261124)
    passed = left_to_marshmallow_and_accepted = 0
    for i in range(4000):
        envelope = _mutated({"message": "ok", "data": originals[i % 4]}, rng)
        try:
            envelope_schema.load(envelope)
            accepted = True
        except ValidationError:
            accepted = False
        if quick(envelope):
            assert accepted, envelope
            passed += 1
        elif accepted:
            left_to_marshmallow_and_accepted += 1
    # Both branches were exercised many times over.
    assert passed > 300 and left_to_marshmallow_and_accepted > 50


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ({"n": fields.Integer(validate=validate.Range(min=1))}, "options"),
        ({"l": fields.List(fields.String(validate=validate.Length(max=3)))}, "options"),
        ({"s": fields.String(data_key="S")}, "options"),
        ({"e": fields.Email()}, "options"),  # it validates the address
        ({"d": fields.Dict()}, "Dict is not supported"),
        ({"o": fields.Nested(AttendeeSchema, unknown=RAISE)}, "Nested is not supported"),
    ],
    ids=["validator", "item-validator", "data_key", "email", "dict", "strict-nested"],
)
def test_plainly_valid_refuses_what_it_cannot_check_exactly(
    declared: dict[str, Any], reason: str
) -> None:
    with pytest.raises(TypeError, match=reason):
        plainly_valid(Schema.from_dict(declared)(unknown=EXCLUDE))


class _Trimmed(Schema):
    name = fields.String()

    @post_load
    def trim(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return data


def test_plainly_valid_refuses_strict_schemas_and_hooks() -> None:
    with pytest.raises(TypeError, match="unknown"):
        plainly_valid(Schema.from_dict({"a": fields.String()})(unknown=RAISE))
    with pytest.raises(TypeError, match="hooks"):
        plainly_valid(_Trimmed())
