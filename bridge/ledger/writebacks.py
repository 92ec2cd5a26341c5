"""Write-back jobs: planned with their delivery, created in the transaction that records the
delivery's final outcome (so a crash between the cancel and the write-back loses nothing),
claimed one at a time by the worker under a lease, completed with what the vendor answered.

The per-host rate limit they share across processes is `WriteBackRates` (GCRA, one row per
host), kept apart from MeetBit's limiter on purpose: a vendor's budget and pauses never touch
MeetBit's calls, nor the other way round.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.core.delivery import Delivery
from bridge.ledger.database import Database, Insert, now
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import write_back_plans, write_back_rates, write_backs

_w = write_backs.c
_p = write_back_plans.c
_r = write_back_rates.c

# The statuses a job is tried from (besides an in-flight one whose lease lapsed).
RETRYABLE = ("pending", "failed")
NOT_FINAL = ("pending", "in_flight", "failed")


@dataclass(frozen=True)
class WriteBack:
    id: str
    delivery_id: str
    route: str
    entry: int
    to: str
    record: str
    calendar_id: int
    event_id: int
    outcome: str
    status: str
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    next_attempt_at: datetime | None
    lease_until: datetime | None
    sent: bool
    last_error: str | None
    created_id: str | None


_COLUMNS = tuple(_w[name] for name in WriteBack.__dataclass_fields__)


def new_write_back_id() -> str:
    """`wb_` + 128 random bits: also the `webhook-id` of a signed webhook write-back."""
    return "wb_" + secrets.token_urlsafe(16)


def final_word(delivery: Delivery) -> str | None:
    """The word `on:` lists for a final delivery (`dead`, or its outcome), else None."""
    if delivery.status == "dead":
        return "dead"
    return delivery.outcome if delivery.final else None


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


_PLAN_INSERT = sa.insert(write_back_plans).values(
    delivery_id=sa.bindparam("delivery_id", type_=_p.delivery_id.type),
    entries=sa.bindparam("entries", type_=_p.entries.type),
    context=sa.bindparam("context", type_=_p.context.type),
)
_PLAN = sa.select(_p.entries).where(
    _p.delivery_id == sa.bindparam("p_id", type_=_p.delivery_id.type)
)


def _job_insert(insert: Any) -> sa.ClauseElement:
    # A job for the same (entry, record, event) exists already: nothing is written, ever again.
    stmt: Insert = insert(write_backs)
    return stmt.on_conflict_do_nothing(
        index_elements=["route", "entry", "record", "calendar_id", "event_id"]
    )


class WriteBacks:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- in the delivery's own transactions ---------------------------------------------------

    def plan_in(self, conn: Conn, delivery_id: str, plan: dict[str, Any]) -> None:
        """Keep a new delivery's write-back plan (`entries`, `context`) with its row."""
        params = {
            "delivery_id": delivery_id,
            "entries": plan["entries"],
            "context": plan.get("context"),
        }
        self.db.prepared(_PLAN_INSERT).run(conn, params)

    def create_in(self, conn: Conn, delivery: Delivery) -> int:
        """In the transaction that made `delivery` final: a job for every planned entry whose
        `on` lists its outcome. Returns how many were created."""
        word = final_word(delivery)
        if word is None or delivery.calendar_id is None or delivery.event_id is None:
            return 0
        row = self.db.prepared(_PLAN).first(conn, {"p_id": delivery.id})
        if row is None:
            return 0
        at = now()
        created = 0
        for entry in row.entries:
            if word not in entry["on"]:
                continue
            error = entry.get("error")
            values = {
                "id": new_write_back_id(),
                "delivery_id": delivery.id,
                "route": delivery.route,
                "entry": entry["entry"],
                "to": entry["to"],
                "record": entry.get("record") or "",
                "calendar_id": delivery.calendar_id,
                "event_id": delivery.event_id,
                "outcome": word,
                # A record that could not be rendered is dead at once, with the reason shown.
                "status": "dead" if error else "pending",
                "attempts": 0,
                "max_attempts": entry["max_attempts"],
                "created_at": at,
                "updated_at": at,
                "expires_at": at + timedelta(seconds=entry["max_age"]),
                "next_attempt_at": None,
                "lease_until": None,
                "sent": False,
                "last_error": error,
                "created_id": None,
            }
            created += self.db.prepared(_job_insert).run(conn, values)
        return created

    # -- the worker ---------------------------------------------------------------------------

    def claim(self, *, lease: float) -> WriteBack | None:
        """The next due job, claimed in flight until `lease` seconds from now; as it was
        before the claim (its `sent` says whether an earlier attempt may have written)."""
        at = now()
        due = sa.or_(
            sa.and_(
                _w.status.in_(RETRYABLE),
                sa.or_(_w.next_attempt_at.is_(None), _w.next_attempt_at <= at),
            ),
            sa.and_(_w.status == "in_flight", _w.lease_until <= at),
        )
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(*_COLUMNS)
                .where(due)
                .order_by(_w.created_at, _w.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            job = WriteBack(*row)
            conn.execute(
                sa.update(write_backs)
                .where(_w.id == job.id)
                .values(
                    status="in_flight",
                    lease_until=at + timedelta(seconds=lease),
                    updated_at=at,
                )
            )
        return job

    def context(self, job: WriteBack) -> dict[str, Any]:
        """What the job's text reads besides `result`: the webhook's part kept at intake."""
        with self.db.read() as conn:
            found = conn.execute(
                sa.select(_p.context).where(_p.delivery_id == job.delivery_id)
            ).scalar()
        return dict(found or {})

    def extend(self, job_id: str, *, lease: float) -> None:
        """Renew the claim of a job in hand for `lease` seconds (before each of its calls)."""
        at = now()
        with self.db.write() as conn:
            conn.execute(
                sa.update(write_backs)
                .where(_w.id == job_id, _w.status == "in_flight")
                .values(lease_until=at + timedelta(seconds=lease), updated_at=at)
            )

    def mark_sent(self, job_id: str) -> None:
        """Right before the write: from now on a retry looks for the marker first."""
        with self.db.write() as conn:
            conn.execute(
                sa.update(write_backs).where(_w.id == job_id).values(sent=True, updated_at=now())
            )

    def release(self, job_id: str, *, next_attempt_at: float | None) -> None:
        """Hand a claimed job back, nothing counted (no slot in time)."""
        with self.db.write() as conn:
            conn.execute(
                sa.update(write_backs)
                .where(_w.id == job_id, _w.status == "in_flight")
                .values(
                    status="pending",
                    lease_until=None,
                    next_attempt_at=_dt(next_attempt_at),
                    updated_at=now(),
                )
            )

    def complete(
        self,
        job_id: str,
        *,
        status: str,
        last_error: str | None = None,
        created_id: str | None = None,
        next_attempt_at: float | None = None,
        sent: bool | None = None,
    ) -> None:
        """Record one attempt's result (counting it) and end the claim."""
        values: dict[str, Any] = {
            "status": status,
            "attempts": _w.attempts + 1,
            "last_error": last_error,
            "next_attempt_at": _dt(next_attempt_at),
            "lease_until": None,
            "updated_at": now(),
        }
        if created_id is not None:
            values["created_id"] = created_id
        if sent is not None:
            values["sent"] = sent
        with self.db.write() as conn:
            conn.execute(sa.update(write_backs).where(_w.id == job_id).values(**values))

    # -- reading and replaying ----------------------------------------------------------------

    def get(self, job_id: str) -> WriteBack | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(_w.id == job_id)).first()
        return None if row is None else WriteBack(*row)

    def for_delivery(self, delivery_id: str) -> list[WriteBack]:
        query = sa.select(*_COLUMNS).where(_w.delivery_id == delivery_id).order_by(_w.entry)
        with self.db.read() as conn:
            return [WriteBack(*r) for r in conn.execute(query)]

    def counts(self) -> dict[tuple[str, str], int]:
        """Jobs by (to, status), for `/metrics`."""
        query = sa.select(_w.to, _w.status, sa.func.count()).group_by(_w.to, _w.status)
        with self.db.read() as conn:
            return {(r[0], r[1]): int(r[2]) for r in conn.execute(query)}

    def busy(self, *, within: float) -> int:
        """Jobs pending or in flight, or failed and due within `within` seconds."""
        soon = now() + timedelta(seconds=within)
        query = (
            sa.select(sa.func.count())
            .select_from(write_backs)
            .where(
                sa.or_(
                    _w.status.in_(("pending", "in_flight")),
                    sa.and_(_w.status == "failed", _w.next_attempt_at <= soon),
                )
            )
        )
        with self.db.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def replayable(self, *, route: str | None = None) -> list[WriteBack]:
        """Failed or dead jobs, oldest first."""
        query = sa.select(*_COLUMNS).where(_w.status.in_(("failed", "dead")))
        if route is not None:
            query = query.where(_w.route == route)
        with self.db.read() as conn:
            return [WriteBack(*r) for r in conn.execute(query.order_by(_w.created_at, _w.id))]

    def replay(self, job_id: str, *, max_age: float) -> bool:
        """Queue a failed or dead job again, with a fresh attempt and age budget; its `sent`
        flag stays, so a write that may have happened is looked for first."""
        at = now()
        with self.db.write() as conn:
            done = conn.execute(
                sa.update(write_backs)
                .where(_w.id == job_id, _w.status.in_(("failed", "dead")))
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=None,
                    lease_until=None,
                    expires_at=at + timedelta(seconds=max_age),
                    updated_at=at,
                )
            ).rowcount
        return bool(done)


class WriteBackRates:
    """GCRA per vendor host: reservations spaced `interval` apart, and a 429's pause, shared by
    every process on the ledger."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, host: str, *, interval: float, max_wait: float) -> tuple[float | None, float]:
        """(the start reserved, None when beyond `max_wait`; the next free start)."""
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(_r.tat, _r.paused_until).where(_r.host == host).with_for_update()
            ).first()
            if row is None:
                conn.execute(
                    self.db.insert(write_back_rates)
                    .values(host=host, tat=0.0, paused_until=0.0)
                    .on_conflict_do_nothing(index_elements=["host"])
                )
                row = conn.execute(
                    sa.select(_r.tat, _r.paused_until).where(_r.host == host).with_for_update()
                ).one()
            at = time.time()
            start = max(at, float(row.tat), float(row.paused_until))
            if start - at > max_wait:
                return None, start
            conn.execute(
                sa.update(write_back_rates).where(_r.host == host).values(tat=start + interval)
            )
        return start, start

    def paused_until(self, host: str) -> float:
        with self.db.read() as conn:
            found = conn.execute(sa.select(_r.paused_until).where(_r.host == host)).scalar()
        return float(found or 0.0)

    def pause(self, host: str, *, until: float) -> None:
        """Hold every process's calls to `host` until `until` (a pause only lengthens)."""
        stmt = self.db.insert(write_back_rates).values(host=host, tat=until, paused_until=until)
        stmt = stmt.on_conflict_do_update(
            index_elements=["host"],
            set_={
                "paused_until": sa.case(
                    (stmt.excluded.paused_until > _r.paused_until, stmt.excluded.paused_until),
                    else_=_r.paused_until,
                ),
                "tat": sa.case((stmt.excluded.tat > _r.tat, stmt.excluded.tat), else_=_r.tat),
            },
        )
        with self.db.write() as conn:
            conn.execute(stmt)
