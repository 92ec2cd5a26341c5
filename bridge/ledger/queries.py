"""Read-mostly questions about many deliveries at once: the admin log, the metrics' counts and
retention (purge)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from bridge.core.delivery import FINAL_OUTCOMES, STATUSES, Delivery
from bridge.ledger.database import Database, now
from bridge.ledger.deliveries import COLUMNS, not_final, to_delivery
from bridge.ledger.pagination import cursor_time, decode_cursor, encode_cursor
from bridge.ledger.tables import deliveries, webhook_receipts, workers

_d = deliveries.c


def _purged(older_than: datetime) -> sa.ColumnElement[bool]:
    """The deliveries retention deletes: final (dead, or a final outcome), created before
    `older_than`. One rule for the purge and for its dry run."""
    final = sa.or_(_d.status == "dead", _d.outcome.in_(sorted(FINAL_OUTCOMES)))
    return sa.and_(final, _d.created_at < _aware(older_than, "older_than"))


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


class Queries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def deliveries(
        self,
        *,
        status: str | None = None,
        route: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        outcome: str | None = None,
        state: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, `limit` per page; pass the returned cursor for the next.

        `state`: `final` (no further call will be made) or `retrying` (failed transiently,
        the worker tries again)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(*COLUMNS)
        if status is not None:
            query = query.where(_d.status == status)
        if route is not None:
            query = query.where(_d.route == route)
        if since is not None:
            query = query.where(_d.created_at >= _aware(since, "since"))
        if outcome is not None:
            query = query.where(_d.outcome == outcome)
        if state == "final":
            query = query.where(sa.not_(not_final()))
        elif state == "retrying":
            query = query.where(_d.status == "failed", not_final())
        elif state is not None:
            raise ValueError("state must be final or retrying")
        if cursor is not None:
            stamp, last_id = decode_cursor(cursor, (str, str))
            at = cursor_time(stamp)
            query = query.where(
                sa.or_(_d.created_at < at, sa.and_(_d.created_at == at, _d.id < last_id))
            )
        query = query.order_by(_d.created_at.desc(), _d.id.desc()).limit(limit + 1)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        page = [to_delivery(r) for r in rows[:limit]]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = encode_cursor([last.created_at.isoformat(), last.id])
        return page, more

    def counts_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        with self.db.read() as conn:
            for status, count in conn.execute(
                sa.select(_d.status, sa.func.count()).group_by(_d.status)
            ).all():
                counts[status] = int(count)
        return counts

    def oldest_pending_age(self) -> float | None:
        """Age in seconds of the oldest delivery still awaiting a final outcome, or None."""
        with self.db.read() as conn:
            oldest: datetime | None = conn.execute(
                sa.select(sa.func.min(_d.created_at)).where(
                    not_final(), _d.status.in_(("pending", "failed", "in_flight"))
                )
            ).scalar()
        if oldest is None:
            return None
        return max(0.0, (now() - oldest).total_seconds())

    def purgeable(self, *, older_than: datetime) -> int:
        """How many deliveries `purge(older_than=...)` would delete now."""
        query = sa.select(sa.func.count()).select_from(deliveries).where(_purged(older_than))
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def purge(self, *, older_than: datetime) -> int:
        """Delete final deliveries created before `older_than` (their attempts go with them),
        old webhook receipts and stale worker heartbeats; returns the deliveries deleted."""
        purged = _purged(older_than)
        with self.db.maintenance() as conn:
            deleted = conn.execute(sa.delete(deliveries).where(purged)).rowcount
            conn.execute(
                sa.delete(webhook_receipts).where(webhook_receipts.c.received_at < older_than)
            )
            conn.execute(sa.delete(workers).where(workers.c.seen_at < older_than))
        return int(deleted)
