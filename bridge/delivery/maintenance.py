"""The ledger itself, for operators: open it, bring its schema up to date, say where it is and
whether the bridge can use it (what `meetbit-bridge check` reports), and purge what retention
no longer keeps, with a dry run that only counts, by hand or on the worker's schedule.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bridge.errors import LedgerSchemaMissing, LedgerUnavailable
from bridge.ledger import Ledger
from bridge.meetbit import MeetBitClient
from bridge.settings import Settings

__all__ = [
    "PurgeSchedule",
    "open_ledger",
    "probe",
    "probe_meetbit",
    "purge",
    "schema_revisions",
    "sqlite_file",
    "upgrade_schema",
]

log = logging.getLogger(__name__)

PURGE_LEASE = "purge"
# The scheduled purge's lease: renewed after every batch (each takes well under a second), so
# it lapses within this long of a holder that died, and another instance takes over.
PURGE_LEASE_SECONDS = 120.0
# How often an idle schedule looks whether a purge is due (cheap: one row).
PURGE_CHECK_EVERY = 60.0


def open_ledger(url: str, *, migrate: bool) -> Ledger:
    """The ledger at `url`, its schema brought up to date when `migrate` (as the web app does
    for its default SQLite ledger); the caller disposes of it."""
    ledger = Ledger(url)
    try:
        if migrate:
            ledger.ensure_schema()
        else:
            ledger.ping()  # a missing or older schema is named now, not at the first query
    except BaseException:
        ledger.dispose()
        raise
    return ledger


def upgrade_schema(url: str) -> None:
    """Create or migrate the ledger schema at `url` (the Procfile's release phase)."""
    ledger = Ledger(url)
    try:
        ledger.upgrade()
    finally:
        ledger.dispose()


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite ledger's file (a relative one is relative to the current
    directory, as SQLite opens it); None for an in-memory or a PostgreSQL ledger."""
    if not url.startswith("sqlite"):
        return None
    database = sa.make_url(url).database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).absolute()


def probe(url: str) -> str:
    """Whether the bridge can use the ledger at `url`, in words, touching nothing that the bridge
    would not: a SQLite file that does not exist yet is not created. Raises `LedgerUnavailable`
    when it cannot be used (`LedgerSchemaMissing`: PostgreSQL without its current schema)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        if not _creatable(path):
            raise LedgerUnavailable(f"{path} does not exist and its folder is not writable")
        return "not created yet: the bridge creates it on first start"
    try:
        ledger = open_ledger(url, migrate=False)
    except LedgerSchemaMissing:
        if url.startswith("sqlite"):
            return "schema missing or older: the bridge migrates it on first start"
        raise
    except sa.exc.DBAPIError as exc:  # answered, but not as a database: not a SQLite file...
        raise LedgerUnavailable("the ledger database refuses the bridge") from exc
    ledger.dispose()
    return "schema up to date"


def schema_revisions(url: str) -> tuple[list[str], list[str]]:
    """The ledger's schema revision(s) and the newest this bridge knows (Alembic's ids)."""
    from bridge.ledger import migrate

    ledger = Ledger(url)
    try:
        with ledger.db.read() as conn:
            current = migrate.current_revisions(conn)
    finally:
        ledger.dispose()
    return sorted(current), sorted(migrate.head_revisions())


def probe_meetbit(settings: Settings) -> str:
    """Whether MeetBit accepts the configured access key and its role, in words; raises the
    client's typed `MeetBitError` when it does not (or cannot be reached). One request, which
    can never cancel anything (`MeetBitClient.probe_key`)."""
    with MeetBitClient(
        settings.meetbit_base_url,
        settings.meetbit_access_key_id,
        settings.meetbit_access_key_secret,
        timeout=settings.meetbit_timeout,
    ) as client:
        status = client.probe_key()
    return f"key accepted (MeetBit answered {status} to a cancel of an event that cannot exist)"


def _creatable(path: Path) -> bool:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def purge(
    ledger: Ledger,
    *,
    keep_days: int,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete final deliveries older than `keep_days` (and the canceled events, webhook
    receipts and worker heartbeats retention no longer keeps), in batches; returns how many
    deliveries went, or with `dry_run` would go. `progress`: the deleted count so far."""
    older_than = datetime.now(UTC) - timedelta(days=keep_days)
    if dry_run:
        return ledger.queries.purgeable(older_than=older_than)
    return ledger.queries.purge(older_than=older_than, progress=progress)


class _Stopped(Exception):
    """The worker is stopping: the scheduled purge ends after the batch in hand."""


class PurgeSchedule:
    """`BRIDGE_PURGE_EVERY`: the worker purges every `every` seconds, one process at a time
    across every instance on the ledger (a lease in the ledger, renewed after each batch; the
    schedule counts from the last purge done by any of them)."""

    def __init__(self, ledger: Ledger, *, every: float, keep_days: int, holder: str) -> None:
        self.ledger = ledger
        self.every = every
        self.keep_days = keep_days
        self.holder = holder

    def run_if_due(self, stop: threading.Event | None = None) -> int | None:
        """Purge now if it is due and no other process is purging; the deliveries deleted,
        or None if it was not this process's turn (or `stop` ended it after a batch)."""
        coordination = self.ledger.coordination
        if not coordination.take_lease(
            PURGE_LEASE, self.holder, seconds=PURGE_LEASE_SECONDS, every=self.every
        ):
            return None
        done = False
        try:

            def renew(_deleted: int) -> None:
                if stop is not None and stop.is_set():
                    raise _Stopped
                if not coordination.renew_lease(
                    PURGE_LEASE, self.holder, seconds=PURGE_LEASE_SECONDS
                ):
                    raise LedgerUnavailable("the purge lease was lost")

            deleted = purge(self.ledger, keep_days=self.keep_days, progress=renew)
            done = True
            log.info("purged %d deliveries older than %d days", deleted, self.keep_days)
            return deleted
        except _Stopped:
            return None  # the next schedule carries on where this one stopped
        finally:
            try:
                coordination.release_lease(PURGE_LEASE, self.holder, done=done)
            except LedgerUnavailable:
                pass  # the lease lapses by itself

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: purge whenever due (a thread of the worker process)."""
        while not stop.is_set():
            try:
                self.run_if_due(stop)
            except LedgerUnavailable as exc:
                log.warning("scheduled purge not done: %s", exc.detail)
            stop.wait(min(self.every, PURGE_CHECK_EVERY))
