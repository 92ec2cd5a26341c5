"""The link store: any key (a customer's email, a CRM record id) mapped to MeetBit events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.pagination import decode_cursor, encode_cursor
from bridge.ledger.tables import links

_l = links.c


@dataclass(frozen=True)
class Link:
    key: str
    calendar_id: int
    event_id: int
    created_at: datetime


def _link(row: Any) -> Link:
    return Link(row.key, row.calendar_id, row.event_id, row.created_at)


_BY_KEY = (
    sa.select(links)
    .where(_l.key == sa.bindparam("p_key", type_=_l.key.type))
    .order_by(_l.created_at, _l.calendar_id, _l.event_id)
)


class Links:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, key: str, calendar_id: int, event_id: int) -> bool:
        """Store `key -> (calendar_id, event_id)`; False if that link already existed."""
        stmt = (
            self.db.insert(links)
            .values(key=key, calendar_id=calendar_id, event_id=event_id, created_at=now())
            .on_conflict_do_nothing(index_elements=["key", "calendar_id", "event_id"])
            .returning(_l.key)
        )
        with self.db.write() as conn:
            return conn.execute(stmt).first() is not None

    def get(self, key: str) -> list[Link]:
        """The key's links, oldest first (read on every email or link-key webhook)."""
        with self.db.fast(write=False) as conn:
            rows = self.db.prepared(_BY_KEY).rows(conn, {"p_key": key})
        return [_link(r) for r in rows]

    def delete(
        self, key: str, *, calendar_id: int | None = None, event_id: int | None = None
    ) -> int:
        stmt = sa.delete(links).where(_l.key == key)
        if calendar_id is not None:
            stmt = stmt.where(_l.calendar_id == calendar_id)
        if event_id is not None:
            stmt = stmt.where(_l.event_id == event_id)
        with self.db.write() as conn:
            return int(conn.execute(stmt).rowcount)

    def list(self, *, cursor: str | None = None, limit: int = 100) -> tuple[list[Link], str | None]:
        """All links ordered by key, then target; keyset pagination."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(links)
        if cursor is not None:
            key, cal, ev = decode_cursor(cursor, (str, int, int))
            query = query.where(
                sa.or_(
                    _l.key > key,
                    sa.and_(_l.key == key, _l.calendar_id > cal),
                    sa.and_(_l.key == key, _l.calendar_id == cal, _l.event_id > ev),
                )
            )
        query = query.order_by(_l.key, _l.calendar_id, _l.event_id).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        page = [_link(r) for r in rows[:limit]]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = encode_cursor([last.key, last.calendar_id, last.event_id])
        return page, more
