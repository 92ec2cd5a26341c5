"""Read-mostly questions about many deliveries at once: the admin log and the console's (with
its search), the metrics' counts, the console's overview figures, and retention (purge).

Every listing is newest first on `(created_at, id)` and filters on an indexed column, so a
page costs an index range whatever the ledger's size (tables.py names the indexes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.core.delivery import FINAL_OUTCOMES, STATUSES, Delivery
from bridge.ledger.database import Database, now
from bridge.ledger.deliveries import COLUMNS, not_final, to_delivery
from bridge.ledger.pagination import cursor_time, decode_cursor, encode_cursor
from bridge.ledger.tables import (
    bulk_replays,
    canceled_events,
    deliveries,
    links,
    rate_limits,
    webhook_receipts,
    webhook_requests,
    workers,
)

_d = deliveries.c
_c = canceled_events.c
# An email's search looks at this many of its linked events at most.
EMAIL_EVENTS = 100

# Rows deleted per purge transaction: each holds SQLite's write lock for ~10-30 ms, so a
# webhook that arrives meanwhile waits about that long, never the whole purge.
PURGE_BATCH = 1000
# On SQLite, after each batch the purge sleeps this share of the time the batch took, and at
# least PURGE_GAP: writers queued on the lock poll for it (SQLite's busy handler sleeps up
# to 25 ms at a time by then) and get their turn between two batches. PostgreSQL locks only
# the rows deleted, so there it goes straight on.
PURGE_YIELD = 0.5
PURGE_GAP = 0.03
# SQLite pages handed back to the file system per incremental-vacuum step (4 MB of 4 KB pages).
VACUUM_STEP_PAGES = 1024


def _final() -> sa.ColumnElement[bool]:
    return sa.or_(_d.status == "dead", _d.outcome.in_(sorted(FINAL_OUTCOMES)))


def _purged(older_than: datetime) -> sa.ColumnElement[bool]:
    """The deliveries retention deletes: final (dead, or a final outcome), created before
    `older_than`. One rule for the purge and for its dry run."""
    return sa.and_(_final(), _d.created_at < _aware(older_than, "older_than"))


def _unreferenced() -> sa.ColumnElement[bool]:
    """A canceled event that no delivery names any more (ix_deliveries_event answers it)."""
    return ~sa.exists().where(_d.calendar_id == _c.calendar_id, _d.event_id == _c.event_id)


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

    def failed_retrying(self) -> int:
        """Failed deliveries that will be attempted again (a transient failure, not final)."""
        with self.db.read() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).where(_d.status == "failed", not_final())
            ).scalar()
        return int(count or 0)

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

    def purge(
        self,
        *,
        older_than: datetime,
        progress: Callable[[int], None] | None = None,
        batch: int = PURGE_BATCH,
    ) -> int:
        """Delete final deliveries created before `older_than` (their attempts go with them),
        then canceled events older than that which no delivery names any more, the stored
        requests none of whose deliveries is left, bulk replays started before then, old
        webhook receipts and stale worker heartbeats; returns the deliveries deleted.

        Each batch is its own short transaction, so webhooks are answered while it runs;
        `progress` is called with the deliveries deleted so far after each batch. A SQLite
        file then gives the freed pages back (`reclaim`)."""
        cutoff = _aware(older_than, "older_than")
        deleted = 0
        # Walk the created index once, oldest first: rows not yet final are stepped over,
        # never read again by a later batch.
        after: tuple[datetime, str] | None = None
        while True:
            query = sa.select(_d.created_at, _d.id, _final()).where(_d.created_at < cutoff)
            if after is not None:
                query = query.where(sa.tuple_(_d.created_at, _d.id) > sa.tuple_(*after))
            query = query.order_by(_d.created_at, _d.id).limit(batch)
            began = time.monotonic()
            with self.db.maintenance() as conn:
                rows = conn.execute(query).all()
                doomed = [r[1] for r in rows if r[2]]
                if doomed:
                    conn.execute(sa.delete(deliveries).where(_d.id.in_(doomed)))
            if not rows:
                break
            deleted += len(doomed)
            after = (rows[-1][0], rows[-1][1])
            if progress is not None:
                progress(deleted)
            self._yield(began)
        self._purge_canceled(cutoff, batch)
        self._purge_requests(cutoff, batch)
        self._purge_by_time(bulk_replays, bulk_replays.c.created_at, cutoff, batch)
        self._purge_by_time(webhook_receipts, webhook_receipts.c.received_at, cutoff, batch)
        self._purge_by_time(workers, workers.c.seen_at, cutoff, batch)
        self.reclaim()
        return deleted

    def _purge_canceled(self, cutoff: datetime, batch: int) -> None:
        """Canceled events are what answers a later cancel of the same event (under a new
        idempotency key) `already_canceled` without a call; each is kept for the retention
        period and as long as a delivery names it (its event is the delivery's answer)."""
        after = (-1, -1)
        while True:
            began = time.monotonic()
            key = sa.tuple_(_c.calendar_id, _c.event_id)
            with self.db.maintenance() as conn:
                keys = conn.execute(
                    sa.select(_c.calendar_id, _c.event_id, _c.canceled_at < cutoff)
                    .where(key > sa.tuple_(*after))
                    .order_by(_c.calendar_id, _c.event_id)
                    .limit(batch)
                ).all()
                if not keys:
                    return
                last = (keys[-1][0], keys[-1][1])
                if any(k[2] for k in keys):
                    # The batch's key range (an index range; a list of keys would be a scan).
                    conn.execute(
                        sa.delete(canceled_events).where(
                            key > sa.tuple_(*after),
                            key <= sa.tuple_(*last),
                            _c.canceled_at < cutoff,
                            _unreferenced(),
                        )
                    )
            after = last
            self._yield(began)

    def _purge_requests(self, cutoff: datetime, batch: int) -> None:
        """A stored request outlives none of its deliveries: a batch whose items are partly
        unfinished keeps it. Received before its deliveries were created, so the time bound
        only narrows the walk (ix_webhook_requests_received, then ix_deliveries_request)."""
        r = webhook_requests.c
        after: tuple[datetime, str] | None = None
        while True:
            began = time.monotonic()
            orphan = ~sa.exists().where(_d.request_id == r.id)
            query = sa.select(r.received_at, r.id, orphan).where(r.received_at < cutoff)
            if after is not None:
                query = query.where(sa.tuple_(r.received_at, r.id) > sa.tuple_(*after))
            query = query.order_by(r.received_at, r.id).limit(batch)
            with self.db.maintenance() as conn:
                rows = conn.execute(query).all()
                doomed = [row[1] for row in rows if row[2]]
                if doomed:
                    conn.execute(sa.delete(webhook_requests).where(r.id.in_(doomed), orphan))
            if not rows:
                return
            after = (rows[-1][0], rows[-1][1])
            self._yield(began)

    def _purge_by_time(
        self, table: sa.Table, column: sa.Column[datetime], cutoff: datetime, batch: int
    ) -> None:
        (pk,) = table.primary_key.columns
        while True:
            began = time.monotonic()
            doomed = sa.select(pk).where(column < cutoff).limit(batch).scalar_subquery()
            with self.db.maintenance() as conn:
                count = conn.execute(sa.delete(table).where(pk.in_(doomed))).rowcount
            if count < batch:
                return
            self._yield(began)

    def _yield(self, began: float) -> None:
        if self.db.dialect == "sqlite":
            time.sleep(max(PURGE_GAP, (time.monotonic() - began) * PURGE_YIELD))

    def reclaim(self) -> int:
        """Give a SQLite file's free pages back to the file system, a few megabytes per write
        transaction (`incremental_vacuum`); returns the pages freed. A no-op on PostgreSQL,
        whose autovacuum reuses the space, and on SQLite files without incremental
        auto-vacuum (`db upgrade` converts those)."""
        if self.db.dialect != "sqlite":
            return 0
        freed = 0
        while True:
            began = time.monotonic()
            # In autocommit, as its own write transaction: pysqlite steps a statement inside
            # an open transaction once, and each step of this one frees a single page.
            with self.db.translate():
                pooled = self.db.engine.raw_connection()
                try:
                    driver: Any = pooled.driver_connection
                    if driver.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                        return freed
                    free = int(driver.execute("PRAGMA freelist_count").fetchone()[0])
                    if free == 0:
                        return freed
                    step = min(free, VACUUM_STEP_PAGES)
                    driver.executescript(f"PRAGMA incremental_vacuum({step});")
                finally:
                    pooled.close()
            freed += step
            self._yield(began)
