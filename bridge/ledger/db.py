"""Engine construction for the ledger: URL normalisation and the per-dialect connection setup
that lets many processes share one SQLite file or one PostgreSQL database safely."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# How long a SQLite connection waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
# Seconds a PostgreSQL connect may take before the ledger counts as unavailable.
PG_CONNECT_TIMEOUT = 5

# Execution option marking a connection whose transactions only read; on SQLite those begin
# DEFERRED so that readers do not queue behind the single writer.
READ_ONLY = "ledger_read_only"


def normalize_url(url: str) -> str:
    """Point `postgres://` and `postgresql://` URLs at the psycopg 3 driver; leave others alone."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine for the ledger; it does not connect until first used."""
    parsed = sa.make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        try:
            # `sqlite:///instance/bridge.db` is relative to the working directory.
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # connecting will fail with a clear OperationalError instead
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that our own BEGIN below is the one
        # that counts (and DDL runs inside it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            if not in_memory:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front: a DEFERRED transaction that later
        # upgrades to a writer fails at once with "database is locked" in WAL mode instead of
        # waiting for the busy timeout.
        statement = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        # Straight to the driver: through Connection.exec_driver_sql this costs more than the
        # transaction's own statements. Errors are wrapped as SQLAlchemy would wrap them.
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        try:
            dbapi_connection.execute(statement)
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so): readers then proceed while one process writes.

    Switching needs an exclusive lock and SQLite answers "database is locked" at once, without
    the busy timeout, when several processes open a new file together; so retry until one of
    them has switched it.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
