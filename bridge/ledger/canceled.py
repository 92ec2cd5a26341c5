"""Events known to be canceled, by the bridge or in MeetBit: a later cancel of one is answered
`already_canceled` from here, without a call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.ledger.database import Database, Insert, now
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import canceled_events

_c = canceled_events.c


@dataclass(frozen=True)
class CanceledRecord:
    calendar_id: int
    event_id: int
    source: str
    event: dict[str, Any] | None
    canceled_at: datetime


_FIND = sa.select(canceled_events).where(
    _c.calendar_id == sa.bindparam("p_calendar_id", type_=_c.calendar_id.type),
    _c.event_id == sa.bindparam("p_event_id", type_=_c.event_id.type),
)


def _upsert(insert: Any) -> sa.ClauseElement:
    # The first record keeps its source, time and event; a later one only fills in an event
    # still missing, so the event every delivery of it answers with never changes.
    stmt: Insert = insert(canceled_events)
    return stmt.on_conflict_do_update(
        index_elements=["calendar_id", "event_id"],
        set_={"event": sa.func.coalesce(_c.event, stmt.excluded.event)},
    )


class CanceledEvents:
    def __init__(self, db: Database) -> None:
        self.db = db

    def find_in(self, conn: Conn, calendar_id: int, event_id: int) -> CanceledRecord | None:
        row = self.db.prepared(_FIND).first(
            conn, {"p_calendar_id": calendar_id, "p_event_id": event_id}
        )
        return None if row is None else CanceledRecord(*row)

    def find(self, calendar_id: int, event_id: int) -> CanceledRecord | None:
        with self.db.fast(write=False) as conn:
            return self.find_in(conn, calendar_id, event_id)

    def mark_in(self, conn: Conn, calendar_id: int, event_id: int, source: str, event: Any) -> None:
        params = {
            "calendar_id": calendar_id,
            "event_id": event_id,
            "source": source,
            "event": event,
            "canceled_at": now(),
        }
        self.db.prepared(_upsert).run(conn, params)

    def mark(
        self, calendar_id: int, event_id: int, *, source: str, event: dict[str, Any] | None
    ) -> None:
        """Remember that the event is canceled. The first record keeps its source, time and
        event; a later call only fills in an event still missing (never erases or changes it)."""
        with self.db.fast(write=True) as conn:
            self.mark_in(conn, calendar_id, event_id, source, event)
