"""What bridge processes tell each other through the ledger: MeetBit webhook receipts (so a
redelivered webhook is a no-op), worker heartbeats (so web processes know a worker will
retry what they hand over) and named leases (work one process at a time does, on a schedule
shared by every instance: the worker's purge)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.tables import leases, rate_limits, webhook_receipts, worker_calls, workers

_w = workers.c
_l = leases.c
_ALIVE = (
    sa.select(sa.func.count().label("alive"))
    .select_from(workers)
    .where(_w.seen_at >= sa.bindparam("p_cutoff", type_=_w.seen_at.type))
)


# The readiness probe's own row in rate_limits: read by no one (rate keys are looked up by
# name), so writing it changes nothing any process decides.
_PROBE = "readiness-probe"


class Coordination:
    def __init__(self, db: Database) -> None:
        self.db = db

    def remember_webhook(self, webhook_id: str) -> bool:
        """True the first time this webhook id is seen, False for every duplicate."""
        stmt = (
            self.db.insert(webhook_receipts)
            .values(webhook_id=webhook_id, received_at=now())
            .on_conflict_do_nothing(index_elements=["webhook_id"])
            # RETURNING, not rowcount: drivers need not report rowcount for INSERT.
            .returning(webhook_receipts.c.webhook_id)
        )
        with self.db.write() as conn:
            return conn.execute(stmt).first() is not None

    def heartbeat(self, worker_id: str) -> None:
        stmt = self.db.insert(workers).values(worker_id=worker_id, seen_at=now())
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"], set_={"seen_at": stmt.excluded.seen_at}
        )
        with self.db.write() as conn:
            conn.execute(stmt)

    def forget_worker(self, worker_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(sa.delete(workers).where(_w.worker_id == worker_id))

    def probe_write(self) -> None:
        """Write and commit the probe's row: raises `LedgerUnavailable` when the database
        answers reads but cannot record (read-only files or transaction, a missing privilege,
        a WAL that cannot grow). Committed, not rolled back: a rolled-back write never reaches
        the file, so an open SQLite connection on an unwritable file would pass it."""
        stamp = time.time()
        stmt = self.db.insert(rate_limits).values(
            key=_PROBE, window_start=stamp, used=0, paused_until=0.0, heard=0.0, carry=0
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"window_start": stmt.excluded.window_start}
        )
        with self.db.write(probe=True) as conn:
            conn.execute(stmt)

    def workers_alive(self, *, within: float = 15.0) -> int:
        """How many workers sent a heartbeat in the last `within` seconds."""
        cutoff = now() - timedelta(seconds=within)
        with self.db.fast(write=False) as conn:
            count = self.db.prepared(_ALIVE).rows(conn, {"p_cutoff": cutoff})[0].alive
        return int(count or 0)

    def take_lease(self, name: str, holder: str, *, seconds: float, every: float) -> bool:
        """Take lease `name` for `seconds` if nobody holds it (or its holder's time ran out)
        and its work was last done at least `every` seconds ago; True if `holder` now has it.
        One write transaction, the row locked: two processes never both get it."""
        at = now()
        with self.db.write() as conn:
            conn.execute(
                self.db.insert(leases)
                .values(name=name, holder=None, until=None, done_at=None)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = conn.execute(
                sa.select(_l.holder, _l.until, _l.done_at).where(_l.name == name).with_for_update()
            ).one()
            held = row.until is not None and row.until > at and row.holder != holder
            due = row.done_at is None or row.done_at <= at - timedelta(seconds=every)
            if held or not due:
                return False
            conn.execute(
                sa.update(leases)
                .where(_l.name == name)
                .values(holder=holder, until=at + timedelta(seconds=seconds))
            )
        return True

    def renew_lease(self, name: str, holder: str, *, seconds: float) -> bool:
        """Extend `holder`'s lease; False if it is no longer `holder`'s."""
        at = now()
        with self.db.write() as conn:
            touched = conn.execute(
                sa.update(leases)
                .where(_l.name == name, _l.holder == holder, _l.until > at)
                .values(until=at + timedelta(seconds=seconds))
            ).rowcount
        return touched == 1

    def release_lease(self, name: str, holder: str, *, done: bool) -> None:
        """Give the lease back; `done`: its work was done now (the schedule counts from here)."""
        values: dict[str, datetime | None] = {"holder": None, "until": None}
        if done:
            values["done_at"] = now()
        with self.db.write() as conn:
            conn.execute(
                sa.update(leases).where(_l.name == name, _l.holder == holder).values(values)
            )

    def count_worker_call(self, result: str) -> None:
        """One more MeetBit call made by a worker process, with `result` (`ok` or a reason)."""
        stmt = self.db.insert(worker_calls).values(result=result, calls=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["result"], set_={"calls": worker_calls.c.calls + 1}
        )
        with self.db.write() as conn:
            conn.execute(stmt)

    def worker_calls(self) -> dict[str, int]:
        """Every worker MeetBit call so far, by result."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(worker_calls.c.result, worker_calls.c.calls)).all()
        return {row.result: int(row.calls) for row in rows}
