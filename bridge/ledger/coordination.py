"""What bridge processes tell each other through the ledger: MeetBit webhook receipts (so a
redelivered webhook is a no-op) and worker heartbeats (so web processes know a worker will
retry what they hand over)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.tables import webhook_receipts, workers

_w = workers.c
_ALIVE = (
    sa.select(sa.func.count().label("alive"))
    .select_from(workers)
    .where(_w.seen_at >= sa.bindparam("p_cutoff", type_=_w.seen_at.type))
)


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

    def workers_alive(self, *, within: float = 15.0) -> int:
        """How many workers sent a heartbeat in the last `within` seconds."""
        cutoff = now() - timedelta(seconds=within)
        with self.db.fast(write=False) as conn:
            count = self.db.prepared(_ALIVE).rows(conn, {"p_cutoff": cutoff})[0].alive
        return int(count or 0)
