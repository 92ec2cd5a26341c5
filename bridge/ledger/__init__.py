"""The ledger: the durable record and queue of deliveries, and the state every bridge process
shares through one database. `Ledger` is a small façade: each concern is its own repository
(`ledger.deliveries`, `.attempts`, `.requests`, `.rate`, `.canceled`, `.links`,
`.coordination`, `.queries`, `.replays`, `.alerts`, `.write_backs`, `.write_back_rates`)."""

from __future__ import annotations

import sqlalchemy as sa

from bridge.core.delivery import FINAL_OUTCOMES, STATUSES, Delivery, NewDelivery
from bridge.errors import LedgerSchemaMissing, LedgerUnavailable
from bridge.ledger.alerts import Alerts
from bridge.ledger.attempts import AttemptRecord, Attempts, Confirmed
from bridge.ledger.canceled import CanceledEvents, CanceledRecord
from bridge.ledger.coordination import Coordination
from bridge.ledger.database import Database
from bridge.ledger.deliveries import Deliveries, new_delivery_id
from bridge.ledger.links import Link, Links
from bridge.ledger.queries import Queries
from bridge.ledger.ratelimit import RateLimiter, Slot
from bridge.ledger.replays import BulkReplayRecord, BulkReplays, ReplayItem
from bridge.ledger.requests import RequestRecord, Requests, new_request_id
from bridge.ledger.writebacks import WriteBack, WriteBackRates, WriteBacks

__all__ = [
    "FINAL_OUTCOMES",
    "STATUSES",
    "AttemptRecord",
    "BulkReplayRecord",
    "CanceledRecord",
    "Confirmed",
    "Delivery",
    "Ledger",
    "Link",
    "NewDelivery",
    "ReplayItem",
    "RequestRecord",
    "Slot",
    "WriteBack",
    "new_delivery_id",
    "new_request_id",
]

# Any constant will do; it only has to be the same in every process that migrates this schema.
_SCHEMA_LOCK_KEY = 0x6D62_6272_6964_6765  # "mbbridge"


class Ledger:
    """One ledger database and its repositories. Safe to share between threads; each process
    (and each bridge instance) builds its own and they coordinate through the database."""

    def __init__(self, url: str, *, database: Database | None = None) -> None:
        self.db = database or Database(url)
        self.url = url
        self.rate = RateLimiter(self.db)
        self.canceled = CanceledEvents(self.db)
        self.requests = Requests(self.db)
        self.write_backs = WriteBacks(self.db)
        self.write_back_rates = WriteBackRates(self.db)
        self.deliveries = Deliveries(self.db, self.requests, self.write_backs)
        self.attempts = Attempts(self.db, self.deliveries, self.rate, self.canceled)
        self.links = Links(self.db)
        self.coordination = Coordination(self.db)
        self.queries = Queries(self.db)
        self.replays = BulkReplays(self.db)
        self.alerts = Alerts(self.db)
        self._head_revisions: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"Ledger({self.db!r})"

    def upgrade(self) -> None:
        """Migrate the schema to the newest revision (a no-op when it is already there)."""
        from bridge.ledger import migrate  # Alembic is only needed here; it is slow to import

        with self.db.maintenance() as conn:
            if self.db.dialect == "postgresql":
                # Serialise migrators across processes and hosts; released at commit.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            # Checked under the lock: another process may have just migrated.
            migrated = migrate.current_revisions(conn) != migrate.head_revisions()
            if migrated:
                migrate.upgrade_on(conn)
        if migrated:
            # A SQLite file from before purge gave space back: converted once, at the
            # upgrade (which rewrote its biggest tables anyway).
            self.db.enable_incremental_vacuum()

    def ensure_schema(self) -> None:
        """Upgrade if the schema is missing or behind; cheap when it is current."""
        from bridge.ledger import migrate

        with self.db.read() as conn:
            current = migrate.current_revisions(conn)
        if current != migrate.head_revisions():
            self.upgrade()

    def ping(self) -> None:
        """Raise `LedgerUnavailable` unless the database answers with the newest schema
        (`LedgerSchemaMissing` for a missing or older one)."""
        from bridge.ledger import migrate

        with self.db.read() as conn:
            current = migrate.current_revisions(conn)
        if not current:
            raise LedgerSchemaMissing()
        if current != self._heads():
            raise LedgerSchemaMissing(
                "the ledger database has an older schema; run `meetbit-bridge db upgrade`"
            )

    def ready(self, *, remember: float) -> None:
        """`ping`, then a write probe; and not ready while the latest write of this process
        failed less than `remember` seconds ago: a probe that fits in the page cache passes on
        a full disk that refuses a real delivery."""
        self.ping()
        self.coordination.probe_write()
        failure = self.db.write_failure(within=remember)
        if failure is not None:
            raise LedgerUnavailable(f"the latest write failed: {failure.detail}")

    def _heads(self) -> frozenset[str]:
        if self._head_revisions is None:
            from bridge.ledger import migrate

            self._head_revisions = migrate.head_revisions()
        return self._head_revisions

    def dispose(self) -> None:
        self.requests.answers.stop()
        self.db.dispose()
