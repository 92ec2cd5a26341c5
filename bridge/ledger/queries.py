"""Read-mostly questions about many deliveries at once: the admin log and the console's (with
its search), the metrics' counts, the console's overview figures, and retention (purge).

Every listing is newest first on `(created_at, id)` and filters on an indexed column, so a
page costs an index range whatever the ledger's size (tables.py names the indexes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bridge.core.delivery import FINAL_OUTCOMES, STATUSES, Delivery
from bridge.ledger.database import Database, now
from bridge.ledger.deliveries import COLUMNS, not_final, to_delivery
from bridge.ledger.pagination import cursor_time, decode_cursor, encode_cursor
from bridge.ledger.tables import (
    bulk_replays,
    deliveries,
    links,
    rate_limits,
    webhook_receipts,
    webhook_requests,
    workers,
)

_d = deliveries.c
# An email's search looks at this many of its linked events at most.
EMAIL_EVENTS = 100


def _purged(older_than: datetime) -> sa.ColumnElement[bool]:
    """The deliveries retention deletes: final (dead, or a final outcome), created before
    `older_than`. One rule for the purge and for its dry run."""
    final = sa.or_(_d.status == "dead", _d.outcome.in_(sorted(FINAL_OUTCOMES)))
    return sa.and_(final, _d.created_at < _aware(older_than, "older_than"))


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


# The statuses of deliveries waiting for an attempt.
QUEUED = ("pending", "in_flight", "failed")


@dataclass(frozen=True)
class Counts:
    by_status: dict[str, int]
    by_outcome: dict[str, int]


@dataclass(frozen=True)
class Overview:
    """The ledger's state at `at`; `windows` maps a window (seconds) to its counts."""

    at: datetime
    windows: dict[float, Counts]
    dead: int
    queue_depth: int
    oldest_queued: datetime | None
    paused_until: datetime | None
    last_heartbeat: datetime | None


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
        search: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, `limit` per page; pass the returned cursor for the next.

        `state`: `final` (no further call will be made) or `retrying` (failed transiently,
        the worker tries again). `search` (see `matching`): a delivery id, an idempotency
        key, a calendar or event id, or an email."""
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
            # A row value, which both databases seek to in an index on (..., created_at, id).
            query = query.where(sa.tuple_(_d.created_at, _d.id) < sa.tuple_(at, last_id))
        query = query.order_by(_d.created_at.desc(), _d.id.desc()).limit(limit + 1)
        with self.db.read() as conn:
            if search is not None:
                query = query.where(self._matching(conn, search))
            rows = conn.execute(query).all()
        page = [to_delivery(r) for r in rows[:limit]]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = encode_cursor([last.created_at.isoformat(), last.id])
        return page, more

    def _matching(self, conn: sa.Connection, text: str) -> sa.ColumnElement[bool]:
        """What a search term finds, each by an indexed column: the delivery id, the
        idempotency key, a calendar or event id (digits), and for an email (`@`) the
        deliveries of every event the link store holds under it (links are how the bridge
        knows an email; the deliveries themselves keep none)."""
        term = text.strip()
        found: list[sa.ColumnElement[bool]] = [_d.id == term, _d.idempotency_key == term]
        if term.isascii() and term.isdigit() and 0 < int(term) < 2**63:
            found += [_d.calendar_id == int(term), _d.event_id == int(term)]
        if "@" in term:
            key = term.lower()
            events = conn.execute(
                sa.select(links.c.calendar_id, links.c.event_id)
                .where(links.c.key == key)
                .limit(EMAIL_EVENTS)
            ).all()
            found += [sa.and_(_d.calendar_id == cal, _d.event_id == ev) for cal, ev in events]
        return sa.or_(*found)

    def of_request(self, request_id: str, *, limit: int = 200) -> list[Delivery]:
        """The deliveries recorded from one stored request, in their webhook's order."""
        query = (
            sa.select(*COLUMNS)
            .where(_d.request_id == request_id)
            .order_by(_d.created_at, _d.idempotency_key, _d.seq)
            .limit(limit)
        )
        with self.db.read() as conn:
            return [to_delivery(r) for r in conn.execute(query).all()]

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

    def overview(self, *, windows: Sequence[float], rate_key: str) -> Overview:
        """The console's overview figures, in one read transaction: per status and per
        outcome in each window (seconds back from now), the dead and queued counts, the
        oldest queued delivery, the rate row's pause and the newest worker heartbeat."""
        at = now()
        outcomes = sorted(FINAL_OUTCOMES | {"failed"})
        counted: dict[float, Counts] = {}
        with self.db.read() as conn:

            def count(*where: sa.ColumnElement[bool]) -> int:
                # One index range per figure: (status|outcome, created_at) covers each.
                query = sa.select(sa.func.count()).select_from(deliveries).where(*where)
                return int(conn.execute(query).scalar_one())

            for window in windows:
                since = at - timedelta(seconds=window)
                counted[window] = Counts(
                    by_status={s: count(_d.status == s, _d.created_at >= since) for s in STATUSES},
                    by_outcome={
                        o: count(_d.outcome == o, _d.created_at >= since) for o in outcomes
                    },
                )
            dead = count(_d.status == "dead")
            # Queued rows have no outcome yet: the outcome index finds them among millions.
            queue = sa.and_(_d.outcome.is_(None), _d.status.in_(QUEUED), not_final())
            depth = count(queue)
            oldest: datetime | None = conn.execute(
                sa.select(sa.func.min(_d.created_at)).where(queue)
            ).scalar()
            paused: float | None = conn.execute(
                sa.select(rate_limits.c.paused_until).where(rate_limits.c.key == rate_key)
            ).scalar()
            heartbeat: datetime | None = conn.execute(
                sa.select(sa.func.max(workers.c.seen_at))
            ).scalar()
        pause_until = None
        if paused is not None and paused > at.timestamp():
            pause_until = datetime.fromtimestamp(paused, UTC)
        return Overview(
            at=at,
            windows=counted,
            dead=dead,
            queue_depth=depth,
            oldest_queued=oldest,
            paused_until=pause_until,
            last_heartbeat=heartbeat,
        )

    def purgeable(self, *, older_than: datetime) -> int:
        """How many deliveries `purge(older_than=...)` would delete now."""
        query = sa.select(sa.func.count()).select_from(deliveries).where(_purged(older_than))
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())

    def purge(self, *, older_than: datetime) -> int:
        """Delete final deliveries created before `older_than` (their attempts go with them),
        the stored requests none of whose deliveries is left, bulk replays started before
        then, old webhook receipts and stale worker heartbeats; returns the deliveries
        deleted."""
        purged = _purged(older_than)
        r = webhook_requests.c
        with self.db.maintenance() as conn:
            deleted = conn.execute(sa.delete(deliveries).where(purged)).rowcount
            # A request outlives none of its deliveries: a batch whose items are partly
            # unfinished keeps it. Received before its deliveries were created, so the
            # time bound only narrows the scan.
            conn.execute(
                sa.delete(webhook_requests).where(
                    r.received_at < older_than,
                    ~sa.exists().where(_d.request_id == r.id),
                )
            )
            conn.execute(sa.delete(bulk_replays).where(bulk_replays.c.created_at < older_than))
            conn.execute(
                sa.delete(webhook_receipts).where(webhook_receipts.c.received_at < older_than)
            )
            conn.execute(sa.delete(workers).where(workers.c.seen_at < older_than))
        return int(deleted)
