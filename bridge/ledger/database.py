"""The ledger's database: engine construction (URL normalisation and the per-dialect connection
setup that lets many processes share one SQLite file or one PostgreSQL database safely), its
transactions, with driver errors translated to `LedgerUnavailable`, and the prepared-statement
cache of the hot paths."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

from bridge.errors import LedgerSchemaMissing, LedgerUnavailable
from bridge.ledger.prepared import Prepared, sqlite_begin, sqlite_spoiled, transaction

# How long a SQLite connection waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT = 10.0
# A PostgreSQL ledger that stalls (packets dropped on the way, a lock held by a long
# migration or a runaway query) must be a 503 within seconds, not a request that hangs until
# every web thread is stuck behind it. Each bound is libpq's or the server's own:
PG_CONNECT_TIMEOUT = 3  # seconds a connect may take (libpq counts 2 at least)
PG_STATEMENT_TIMEOUT_MS = 5000  # the server cancels a statement running (or waiting) longer
# Data the server has not acknowledged for this long closes the socket (TCP_USER_TIMEOUT), and
# keepalives find a dead path under an idle pooled connection; pool_pre_ping then replaces it.
PG_TCP_USER_TIMEOUT_MS = 2000
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                 "keepalives_count": 2}  # fmt: skip
PG_POOL_TIMEOUT = 3.0  # seconds a request waits for a free pooled connection

# SQLite copies the WAL back into the database file (a checkpoint, with an fsync) inside
# whichever commit takes the WAL past `wal_autocheckpoint` pages: a ~10 ms stall for that one
# request, every hundred or so cancels. `WalCheckpointer` does it from a background thread
# instead: after about as many writes as SQLite would wait for, or as soon as writes pause.
# The much higher in-commit threshold only bounds the WAL should the thread fall behind.
CHECKPOINT_INTERVAL = 1.0  # how often the thread looks
CHECKPOINT_AFTER_WRITES = 100  # write transactions; ~5 pages each, as SQLite's 1000 pages
FALLBACK_AUTOCHECKPOINT_PAGES = 10_000

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
    if parsed.get_backend_name() == "postgresql":
        connect_args = _pg_bounds(parsed)
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_recycle=1800,
        pool_timeout=PG_POOL_TIMEOUT,
        connect_args=connect_args,
    )


def _pg_bounds(url: sa.URL) -> dict[str, Any]:
    """libpq parameters bounding every wait on the server; any the URL sets itself wins. The
    statement timeout joins the URL's own `options` (a search_path, say) unless they set it."""
    bounds: dict[str, Any] = {
        "connect_timeout": PG_CONNECT_TIMEOUT,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        **PG_KEEPALIVES,
    }
    connect = {name: value for name, value in bounds.items() if name not in url.query}
    options = url.query.get("options", "")
    if isinstance(options, str) and "statement_timeout" not in options:
        connect["options"] = f"{options} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}".strip()
    return connect


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    in_memory = _in_memory(database)
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
                # Before the first table: a new file is then made with incremental
                # auto-vacuum (purge gives pages back); on an existing file it is a no-op.
                cursor.execute("PRAGMA auto_vacuum = INCREMENTAL")
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute(f"PRAGMA wal_autocheckpoint = {FALLBACK_AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> None:
        # A connection that SQLite opened read-only (its files were unwritable at that moment)
        # stays read-only, and one that hit an I/O error or a full disk may hold a spoiled
        # page cache: the pool must open a new one rather than hand it out again.
        if sqlite_spoiled(context.original_exception):
            context.is_disconnect = True

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front: a DEFERRED transaction that later
        # upgrades to a writer fails at once with "database is locked" in WAL mode instead of
        # waiting for the busy timeout.
        statement = sqlite_begin(write=not conn.get_execution_options().get(READ_ONLY))
        # Straight to the driver: through Connection.exec_driver_sql this costs more than the
        # transaction's own statements. Errors are wrapped as SQLAlchemy would wrap them.
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        try:
            dbapi_connection.execute(statement)
        except sqlite3.Error as exc:
            spoiled = sqlite_spoiled(exc)
            if spoiled:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                statement, None, exc, sqlite3.Error, connection_invalidated=spoiled
            ) from exc

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


def _in_memory(database: str) -> bool:
    return database in ("", ":memory:") or database.startswith("file::memory:")


def is_sqlite_file(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite" and not _in_memory(engine.url.database or "")


class WalCheckpointer:
    """Checkpoints a SQLite file's WAL from a daemon thread, so that no request waits for it:
    after `CHECKPOINT_AFTER_WRITES` write transactions, or once writes have paused for an
    interval (a quiet moment, and the file catches up soon after a burst).

    The thread starts with the first write in each process (a fork does not inherit it) and
    ends on `stop` or once the engine is gone. A PASSIVE checkpoint never waits for readers or
    writers; if it cannot finish, the next round carries on.
    """

    def __init__(self, engine: Engine, interval: float = CHECKPOINT_INTERVAL) -> None:
        self._engine = weakref.ref(engine)
        self._database = engine.url.database
        self._interval = interval
        # Only ever incremented (by writers); the thread remembers what it has seen, so the
        # two never race on it. A lost increment only shifts one checkpoint a little.
        self._writes = 0
        self._stopped = threading.Event()
        self._pid = 0  # the process whose thread is running, if any
        self._lock = threading.Lock()

    def written(self) -> None:
        """Note a committed write; the first one in this process starts the thread."""
        self._writes += 1
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._stopped = threading.Event()
                    threading.Thread(
                        target=self._run,
                        args=(self._stopped,),
                        name=f"ledger-wal-checkpoint {self._database}",
                        daemon=True,
                    ).start()

    def stop(self) -> None:
        """End the thread; a later write starts a new one."""
        with self._lock:
            self._stopped.set()
            self._pid = 0

    def _run(self, stopped: threading.Event) -> None:
        done = seen = 0
        while not stopped.wait(self._interval):
            engine = self._engine()
            if engine is None:
                return
            writes = self._writes
            pending = writes - done
            if pending and (pending >= CHECKPOINT_AFTER_WRITES or writes == seen):
                if self._checkpoint(engine):
                    done = writes
            seen = writes
            del engine  # the thread must not keep a dropped ledger's engine alive

    def _checkpoint(self, engine: Engine) -> bool:
        try:
            # On the driver connection, in autocommit: not inside a BEGIN IMMEDIATE of ours.
            pooled = engine.raw_connection()
            try:
                pooled.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
            finally:
                pooled.close()
        except (sqlite3.Error, sa.exc.SQLAlchemyError):
            return False  # busy or gone for now: the next round tries again
        return True


# A statement of the hot paths: a SQLAlchemy construct, or a function building one from the
# dialect's INSERT (for ON CONFLICT clauses, which differ per dialect).
Insert = postgresql.Insert | sqlite.Insert
StatementSource = sa.ClauseElement | Callable[[Callable[[sa.Table], Insert]], sa.ClauseElement]


def now() -> datetime:
    # Wall-clock time: hosts sharing one PostgreSQL ledger are assumed to be NTP-synced.
    return datetime.now(UTC)


# SQLSTATEs (PostgreSQL) and messages (SQLite) of a database that answers but refuses the query
# for a reason an operator fixes: the schema is missing, or the role lacks privileges.
_UNDEFINED_TABLE = "42P01"
_INSUFFICIENT_PRIVILEGE = "42501"
# ... and of one that cannot take writes for now: the operator frees the disk or makes the
# files writable again, and the bridge carries on by itself (see `sqlite_spoiled`).
_READ_ONLY = ("25006", 8)  # read_only_sql_transaction; SQLITE_READONLY
_FULL = ("53100", 13)  # disk_full; SQLITE_FULL
_IO_ERROR = 10  # SQLITE_IOERR (and its extended codes)


def _refused(exc: sa.exc.DBAPIError) -> LedgerUnavailable:
    code = getattr(exc.orig, "sqlstate", None)
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", -1) & 0xFF
    text = str(exc.orig)
    if code == _UNDEFINED_TABLE or text.startswith("no such table"):
        return LedgerSchemaMissing()
    if code == _INSUFFICIENT_PRIVILEGE:
        return LedgerUnavailable(
            "the ledger database refuses the bridge's role access to its tables"
        )
    if code == _READ_ONLY[0] or sqlite_code == _READ_ONLY[1]:
        return LedgerUnavailable("the ledger database is read-only: nothing can be recorded")
    if code == _FULL[0] or sqlite_code == _FULL[1]:
        return LedgerUnavailable("the ledger database's disk is full: nothing can be recorded")
    if sqlite_code == _IO_ERROR:
        return LedgerUnavailable("the ledger database's files cannot be written")
    if isinstance(exc, sa.exc.ProgrammingError):
        raise exc  # a bug in a statement, not the database's state
    return LedgerUnavailable()


class Database:
    """One ledger database: its engine, its transactions and its prepared statements.

    `write`/`read` are SQLAlchemy `Connection` transactions; `fast` is the same on the pooled
    driver connection, for hot paths that run only `Prepared` statements (see prepared.py).
    Every database error a caller can do nothing about becomes `LedgerUnavailable` (503).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported ledger database: {self.dialect}")
        self._checkpointer = WalCheckpointer(self.engine) if is_sqlite_file(self.engine) else None
        self._prepared: dict[object, Prepared] = {}
        # Why the latest write transaction of this process failed, and when; None once one
        # succeeds. `/readyz` reports it: a ledger that answers reads but refuses writes
        # (read-only files, a full disk) is not ready.
        self._write_failure: tuple[float, LedgerUnavailable] | None = None

    def __repr__(self) -> str:
        masked = sa.make_url(normalize_url(self.url)).render_as_string(hide_password=True)
        return f"Database({masked!r})"

    @contextmanager
    def translate(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as exc:
            raise (_refused(exc) or LedgerUnavailable()) from exc
        except sa.exc.ProgrammingError as exc:
            refused = _refused(exc)
            if refused is None:
                raise  # a bug in a statement, not the database's state
            raise refused from exc
        except sa.exc.InterfaceError as exc:
            raise LedgerUnavailable() from exc
        except sa.exc.TimeoutError as exc:  # the connection pool is exhausted
            raise LedgerUnavailable() from exc
        except sa.exc.IntegrityError as exc:
            raise ValueError(f"the ledger rejected the values: {exc.orig}") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise LedgerUnavailable() from exc
            raise

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        """Remember whether this write reached the database (see `write_failure`)."""
        try:
            yield
        except LedgerUnavailable as exc:
            self._write_failure = (time.monotonic(), exc)
            raise

    def write_failure(self, within: float) -> LedgerUnavailable | None:
        """Why the latest write failed, if it did less than `within` seconds ago and no write
        has succeeded since."""
        failure = self._write_failure
        if failure is None or time.monotonic() - failure[0] > within:
            return None
        return failure[1]

    @contextmanager
    def write(self, *, probe: bool = False) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite: the single writer). A `probe`'s
        failure is not remembered as the latest write's (its success is no delivery's)."""
        if probe:
            with self.translate(), self.engine.begin() as conn:
                yield conn
            return
        with self._tracked(), self.translate(), self.engine.begin() as conn:
            yield conn
        self._written()

    @contextmanager
    def maintenance(self) -> Iterator[Connection]:
        """A write transaction without the statement timeout, for work that is long by
        nature (migrations, purging months of deliveries): run by an operator, not a request."""
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.translate(), self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    @contextmanager
    def fast(self, *, write: bool) -> Iterator[PoolProxiedConnection]:
        """`write` or `read` on the pooled driver connection, for `Prepared` statements only."""
        if not write:
            with self.translate(), transaction(self.engine, write=False) as conn:
                yield conn
            return
        with self._tracked(), self.translate(), transaction(self.engine, write=True) as conn:
            yield conn
        self._written()

    def _written(self) -> None:
        self._write_failure = None
        if self._checkpointer is not None:
            self._checkpointer.written()

    def insert(self, table: sa.Table) -> Insert:
        """The dialect's INSERT, which has ON CONFLICT."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def prepared(self, source: StatementSource) -> Prepared:
        """`source` compiled once for this database (see prepared.py); cached by identity, so
        declare each statement once, at module level, beside the method that runs it."""
        found = self._prepared.get(source)
        if found is None:
            statement = source if isinstance(source, sa.ClauseElement) else source(self.insert)
            found = self._prepared[source] = Prepared(statement, self.engine.dialect)
        return found

    def enable_incremental_vacuum(self) -> bool:
        """Convert a SQLite file made without incremental auto-vacuum (one full VACUUM, which
        holds the file for as long as it takes); True if it did. Files made by this version
        already have it; PostgreSQL needs nothing."""
        if not is_sqlite_file(self.engine):
            return False
        with self.translate():
            pooled = self.engine.raw_connection()
            try:
                driver: Any = pooled.driver_connection
                if driver.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
                    return False
                driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
                driver.execute("VACUUM")  # autocommit: VACUUM cannot run in a transaction
                return True
            finally:
                pooled.close()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
