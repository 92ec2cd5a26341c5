"""MeetBit's Event schemas accept both renderings of the Cancel Event page and tolerate drift;
the sandbox answers as they say; the client's answer check holds MeetBit to what the bridge
relies on and no more."""

from __future__ import annotations

import copy
import random
import re
from typing import Any

import pytest
from marshmallow import ValidationError

from bridge.meetbit.schemas import (
    AttendeeSchema,
    CancelRequestSchema,
    EventEnvelopeSchema,
    EventSchema,
    OnlineConferenceSchema,
    canceled_event,
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


def test_the_sandbox_cancel_answer_matches_the_envelope_schema() -> None:
    """The sandbox's real HTTP answer, as the contract the bridge is tested against."""
    import requests

    from bridge.sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(rate_limit=0)) as sandbox:
        keys = {
            "X-Access-Key-Id": sandbox.config.key_id,
            "X-Access-Key-Secret": sandbox.config.key_secret,
        }
        url = f"{sandbox.url}/api/public/v2.0/calendars/12/events/345/cancel"
        with requests.post(url, json={"cancel_note": "Lost"}, headers=keys, timeout=5) as resp:
            assert resp.status_code == 200
            answer = resp.json()
    assert EventEnvelopeSchema().load(answer) == answer
    assert canceled_event(answer, calendar_id=12, event_id=345)[1] is answer["data"]


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


def test_canceled_event_passes_the_event_on_as_sent() -> None:
    """Both renderings and the sandbox's events pass, and the event is MeetBit's own object."""
    for event in [OLDER, newer(), generate_event(12, 345), generate_event(7, 2)]:
        payload = {"message": "Event canceled.", "data": event}
        asked = {"calendar_id": event["calendar_id"], "event_id": event["id"]}
        message, returned = canceled_event(payload, **asked)
        assert message == "Event canceled." and returned is event


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ([1, 2], "not a JSON object"),
        ({"data": generate_event(1, 2)}, "`message`"),
        ({"message": None, "data": generate_event(1, 2)}, "`message`"),
        ({"message": "ok"}, "`data`"),
        ({"message": "ok", "data": [generate_event(1, 2)]}, "`data`"),
        ({"message": "ok", "data": generate_event(1, 3)}, "`id` 3, not the 2 asked for"),
        ({"message": "ok", "data": generate_event(9, 2)}, "`calendar_id` 9, not the 1"),
        ({"message": "ok", "data": {**generate_event(1, 2), "id": "2"}}, "integer `id` (str)"),
        ({"message": "ok", "data": {**generate_event(1, 2), "id": None}}, "integer `id`"),
        ({"message": "ok", "data": {"calendar_id": 1}}, "integer `id` (NoneType)"),
        ({"message": "ok", "data": {"id": 2, "calendar_id": True}}, "`calendar_id` (bool)"),
    ],
    ids=[
        "array", "no-message", "null-message", "no-data", "data-array", "other-event",
        "other-calendar", "string-id", "null-id", "missing-id", "bool-calendar",
    ],
)  # fmt: skip
def test_canceled_event_refuses_what_the_bridge_relies_on(payload: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        canceled_event(payload, calendar_id=1, event_id=2)


def test_canceled_event_checks_only_the_envelope_and_the_ids() -> None:
    """Mutated answers: refused exactly when `message`, `data` or an id is off; whatever else
    is odd passes through untouched (those fields are MeetBit's to grow)."""
    rng = random.Random(20261124)
    accepted = refused = 0
    for i in range(4000):
        original = generate_event(12, 345) if i % 2 else newer()
        envelope = _mutated({"message": "ok", "data": original}, rng)
        asked = {"calendar_id": original["calendar_id"], "event_id": original["id"]}
        data = envelope.get("data")
        relied_on = (
            type(envelope.get("message")) is str
            and type(data) is dict
            and type(data.get("id")) is int
            and type(data.get("calendar_id")) is int
            and (data["calendar_id"], data["id"]) == (asked["calendar_id"], asked["event_id"])
        )
        try:
            _, event = canceled_event(envelope, **asked)
        except ValueError:
            assert not relied_on, envelope
            refused += 1
        else:
            assert relied_on and event is data, envelope
            accepted += 1
    assert accepted > 1000 and refused > 300
