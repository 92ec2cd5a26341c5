"""Alert deduplication across processes: one row per kind says when its last message went
out and how often it happened since, so that every process together sends at most one
message per kind per window, and the next one carries the count of what was held back."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.tables import alerts

_a = alerts.c


class Alerts:
    def __init__(self, db: Database) -> None:
        self.db = db

    def occurred(self, kind: str, *, window: float) -> int | None:
        """Count one occurrence of `kind`. When no message of it went out within `window`
        seconds, the caller sends one now: returns how many occurrences it reports (this one
        and those held back since the last message); else None (held back, counted)."""
        at = now()
        with self.db.write() as conn:
            conn.execute(
                self.db.insert(alerts)
                .values(kind=kind, last_sent_at=None, pending=0)
                .on_conflict_do_nothing(index_elements=["kind"])
            )
            row = conn.execute(
                sa.select(_a.last_sent_at, _a.pending).where(_a.kind == kind).with_for_update()
            ).one()
            count = int(row.pending) + 1
            due = row.last_sent_at is None or row.last_sent_at <= at - timedelta(seconds=window)
            conn.execute(
                sa.update(alerts)
                .where(_a.kind == kind)
                .values(
                    pending=0 if due else count,
                    last_sent_at=at if due else row.last_sent_at,
                )
            )
        return count if due else None
