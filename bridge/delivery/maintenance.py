"""The ledger itself, for operators: open it, bring its schema up to date, say where it is and
whether the bridge can use it (what `meetbit-bridge check` reports), and purge what retention
no longer keeps, with a dry run that only counts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bridge.errors import LedgerSchemaMissing, LedgerUnavailable
from bridge.ledger import Ledger

__all__ = ["open_ledger", "probe", "purge", "sqlite_file", "upgrade_schema"]


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


def _creatable(path: Path) -> bool:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def purge(ledger: Ledger, *, keep_days: int, dry_run: bool = False) -> int:
    """Delete final deliveries older than `keep_days` (and old webhook receipts and worker
    heartbeats); returns how many deliveries went, or with `dry_run` would go."""
    older_than = datetime.now(UTC) - timedelta(days=keep_days)
    if dry_run:
        return ledger.queries.purgeable(older_than=older_than)
    return ledger.queries.purge(older_than=older_than)
