"""The events the sandbox holds: generated deterministically from their ids (same ids, same
event, in every process), booked through `/_sandbox/schedule`, or canceled (soft-deleted)."""

from __future__ import annotations

import copy
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.webhooks import meetbit_timestamp

__all__ = ["EventStore", "generate_event"]

# The newer rendering of the Cancel Event page shows this polymorphic class name.
CANCELED_BY_TYPE = "App\\Models\\Tenant\\User"
CANCELED_BY_ID = 1
FIRST_SCHEDULED_EVENT_ID = 700_000

_TITLES = [
    "Discovery call", "Product demo", "Onboarding session", "Quarterly review",
    "Renewal check-in", "Support follow-up", "Implementation kickoff", "Contract walkthrough",
]  # fmt: skip
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Perlman"]
_EPOCH = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def _attendees(calendar_id: int, first: str, last: str, customer_id: int) -> list[dict[str, Any]]:
    """The calendar's owner (organizer) and the customer who booked."""
    return [
        {
            "email": f"calendar{calendar_id}@sandbox.meetbit.test",
            "name": f"Calendar {calendar_id} Owner",
            "is_organizer": True,
            "customer_id": None,
            "calendar_id": calendar_id,
            "status": 1,
        },
        {
            "email": f"{first}.{last}@example.com".lower(),
            "name": f"{first} {last}",
            "is_organizer": False,
            "customer_id": customer_id,
            "calendar_id": None,
            "status": 0,
        },
    ]


def _online_conference(
    room: tuple[int, int, str], event_id: int, title: str, created: str
) -> dict[str, Any]:
    room_id, account_id, public_id = room
    return {
        "id": room_id,
        "online_conference_account_id": account_id,
        "public_id": public_id,
        "title": title,
        "is_public": False,
        "deleted_at": None,
        "created_at": created,
        "updated_at": created,
        "backer_event_id": event_id,
        "is_occurred": False,
        "started_at": None,
        "ended_at": None,
    }


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate_event(calendar_id: int, event_id: int) -> dict[str, Any]:
    """The (uncanceled) Event that the sandbox holds for these ids; same ids, same event."""
    rng = random.Random(f"meetbit-sandbox/{calendar_id}/{event_id}")
    # The order of the draws is part of the format: changing it changes every event.
    title = rng.choice(_TITLES)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    customer_id = rng.randint(1000, 9999)
    start = _EPOCH + timedelta(days=rng.randint(0, 364), minutes=30 * rng.randint(0, 16))
    end = start + timedelta(minutes=rng.choice([30, 45, 60]))
    created = meetbit_timestamp(
        start - timedelta(days=rng.randint(1, 30), minutes=rng.randint(0, 600))
    )
    public_id, room_public_id = _uuid4(rng), _uuid4(rng)
    provider_event_id = f"{rng.getrandbits(104):026x}"
    room = (rng.randint(1, 99_999), rng.randint(1, 500), room_public_id)
    meeting_link_id = rng.randint(1, 500)
    return {
        "id": event_id,
        "calendar_id": calendar_id,
        "title": f"{title} with {first} {last}",
        "body": f"{title} booked by {first} {last}.",
        "start": meetbit_timestamp(start),
        "end": meetbit_timestamp(end),
        "attendees": _attendees(calendar_id, first, last, customer_id),
        "location": "MeetBit Room",
        "cancel_note": None,
        "canceled_by_id": None,
        "canceled_by_type": None,
        "created_at": created,
        "updated_at": created,
        "deleted_at": None,
        "public_id": public_id,
        "provider_event_id": provider_event_id,
        "customer_id": customer_id,
        "meeting_link_id": meeting_link_id,
        "online_conference": _online_conference(room, event_id, title, created),
    }


class EventStore:
    """Booked and canceled events; every other id below `missing_from` exists as generated."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.canceled: dict[tuple[int, int], dict[str, Any]] = {}
        self.scheduled: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_event_id = FIRST_SCHEDULED_EVENT_ID

    def clear(self) -> None:
        """Forget every booking and cancel."""
        with self._lock:
            self.canceled = {}
            self.scheduled = {}
            self._next_event_id = FIRST_SCHEDULED_EVENT_ID

    def _live(self, calendar_id: int, event_id: int) -> dict[str, Any] | None:
        key = (calendar_id, event_id)
        if key in self.canceled:
            return None
        if key in self.scheduled:
            return self.scheduled[key]
        # Ids start at 1 in MeetBit's tables (auto-increment): 0 never exists.
        if 1 <= event_id < self.config.missing_from and calendar_id >= 1:
            return generate_event(calendar_id, event_id)
        return None

    def exists(self, calendar_id: int, event_id: int) -> bool:
        """Whether the event is there to cancel (a canceled one is soft-deleted: gone)."""
        with self._lock:
            return self._live(calendar_id, event_id) is not None

    def cancel(self, calendar_id: int, event_id: int, note: str) -> dict[str, Any] | None:
        """The canceled event, or None when there was nothing (left) to cancel."""
        with self._lock:
            event = self._live(calendar_id, event_id)
            if event is None:
                return None
            now = meetbit_timestamp()
            event = copy.deepcopy(event)  # scheduled events stay as booked
            event.update(
                cancel_note=note,
                canceled_by_id=CANCELED_BY_ID,
                canceled_by_type=CANCELED_BY_TYPE,
                updated_at=now,
                deleted_at=now,
            )
            self.canceled[(calendar_id, event_id)] = event
            return event

    def book(
        self, email: str, name: str | None, calendar_id: int, event_id: int | None
    ) -> dict[str, Any]:
        """Book (or re-book) an event for this customer; a free id is chosen when none given."""
        with self._lock:
            if event_id is None:
                while (calendar_id, self._next_event_id) in self.scheduled:
                    self._next_event_id += 1
                event_id = self._next_event_id
                self._next_event_id += 1
            event = generate_event(calendar_id, event_id)
            event["attendees"][1].update(email=email, name=name or email.split("@", 1)[0])
            self.scheduled[(calendar_id, event_id)] = event
            self.canceled.pop((calendar_id, event_id), None)
            return event
