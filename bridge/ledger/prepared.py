"""The ledger's hot statements, compiled once by SQLAlchemy and run on the driver's cursor.

A new webhook runs seven statements in three transactions before it is answered. Through
`Connection.execute` each statement costs ~50 µs of SQLAlchemy's execution machinery
(execution context, parameter processing, result objects) and each transaction ~35 µs more,
several times what SQLite takes to run them. So the statements of the hot paths are compiled
once per dialect by SQLAlchemy and run straight on the DBAPI cursor, converting values with
the bind and result processors SQLAlchemy itself would use for their column types: every
value is stored and read exactly as through `Connection.execute`. `transaction` runs them on
a pooled driver connection (pool, pre-ping and invalidation stay SQLAlchemy's); they also run
inside a SQLAlchemy `Connection`'s transaction, which the rest of the ledger keeps using.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["Conn", "Prepared", "sqlite_begin", "sqlite_spoiled", "transaction"]

_Processor = Callable[[Any], Any] | None

# Where a prepared statement runs: a driver transaction from `transaction`, or a SQLAlchemy
# Connection's transaction.
Conn = Connection | PoolProxiedConnection


def sqlite_begin(*, write: bool) -> str:
    """How a ledger transaction begins on SQLite: a writer takes the write lock up front."""
    return "BEGIN IMMEDIATE" if write else "BEGIN"


# SQLite's primary result codes after which a connection is not to be used again: READONLY (a
# connection opened while the files were unwritable stays read-only after they are writable
# again), IOERR, CORRUPT, FULL, CANTOPEN, NOTADB. BUSY and LOCKED are not among them: the same
# connection succeeds once the other writer is done.
_SQLITE_SPOILING = frozenset({8, 10, 11, 13, 14, 26})


def sqlite_spoiled(exc: BaseException) -> bool:
    """True for a SQLite error after which its connection must be discarded."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _SQLITE_SPOILING


def _pooled(conn: Conn) -> PoolProxiedConnection:
    return conn.connection if isinstance(conn, Connection) else conn


def _driver_error(
    dialect: Dialect, conn: Conn, exc: Any, statement: str, cursor: Any = None
) -> sa.exc.DBAPIError:
    """`exc` from the driver as SQLAlchemy raises it, the connection invalidated if lost."""
    lost = dialect.is_disconnect(exc, _pooled(conn).dbapi_connection, cursor) or sqlite_spoiled(exc)
    if lost:
        conn.invalidate(exc)
    error = sa.exc.DBAPIError.instance(
        statement,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return cast(sa.exc.DBAPIError, error)


@contextmanager
def transaction(engine: Engine, *, write: bool) -> Iterator[PoolProxiedConnection]:
    """One transaction on a pooled driver connection, committed when the block ends.

    On SQLite it begins as the ledger's SQLAlchemy transactions do (`sqlite_begin`); psycopg
    begins one implicitly. Only `Prepared` statements may run in it.
    """
    dialect = engine.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        pooled = engine.raw_connection()
    except dbapi_error as exc:  # raised unwrapped when the pool cannot connect
        error = sa.exc.DBAPIError.instance(None, None, exc, dbapi_error, dialect=dialect)
        raise error from exc
    driver: Any = pooled.driver_connection
    try:
        statement = sqlite_begin(write=write) if dialect.name == "sqlite" else ""
        try:
            if statement:
                driver.execute(statement)
            yield pooled
            statement = "COMMIT"
            driver.commit()
        except dbapi_error as exc:
            raise _driver_error(dialect, pooled, exc, statement) from exc
    except BaseException:
        with suppress(dbapi_error):  # a lost connection: the pool discards it
            driver.rollback()
        raise
    finally:
        pooled.close()


class Prepared:
    """One statement, ready to run in a transaction (`Conn`).

    Rows come back as named tuples (`row.column` and `tuple(row)` both work). Driver errors are
    raised as SQLAlchemy's wrapped `DBAPIError` subclasses, as `Connection.execute` raises
    them, and a lost connection is invalidated so that the pool does not hand it out again.
    """

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if compiled.post_compile_params:
            # An expanding IN (a list bound at execution) needs SQLAlchemy's runtime rewriting;
            # hot statements spell constant lists out as literals instead.
            raise ValueError(f"statement needs execution-time compilation: {compiled}")
        self.sql = compiled.string
        self._dialect = dialect
        self._positional = bool(dialect.positional)
        binds = compiled.binds
        if self._positional:
            names = list(compiled.positiontup or ())
        else:
            names = list(dict.fromkeys(compiled.bind_names.values()))
        self._names = names
        # Per parameter: its name, and either its constant (a value written into the statement,
        # already converted) or its processor (None: the driver takes the value as it is).
        self._slots: list[tuple[str, bool, Any, _Processor]] = []
        for name in names:
            bind = binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._slots.append((name, False, None, process))
            else:
                value = process(bind.value) if process is not None else bind.value
                self._slots.append((name, True, value, None))
        columns = list(getattr(statement, "exported_columns", ()))
        self._types = [column.type for column in columns]
        self._row: Any = namedtuple("Row", [column.key for column in columns]) if columns else None
        # Result processors depend on the driver's type codes: read them at first execution.
        self._processors: list[_Processor] | None = None

    def _parameters(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        values = []
        for name, constant, value, process in self._slots:
            if not constant:
                value = params[name]
                if process is not None:
                    value = process(value)
            values.append(value)
        return values if self._positional else dict(zip(self._names, values, strict=True))

    def _execute(self, conn: Conn, params: Mapping[str, Any]) -> Any:
        cursor = _pooled(conn).driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, self._parameters(params))
        except self._dialect.loaded_dbapi.Error as exc:
            error = _driver_error(self._dialect, conn, exc, self.sql, cursor)
            with suppress(self._dialect.loaded_dbapi.Error):
                cursor.close()
            raise error from exc
        return cursor

    def rows(self, conn: Conn, params: Mapping[str, Any]) -> list[Any]:
        """Run a statement that returns rows (SELECT, or DML with RETURNING): all of them."""
        assert self._row is not None, "the statement returns no rows"
        cursor = self._execute(conn, params)
        try:
            raw = cursor.fetchall()
            processors = self._processors
            if processors is None:
                processors = self._processors = [
                    type_.dialect_impl(self._dialect).result_processor(self._dialect, d[1])
                    for type_, d in zip(self._types, cursor.description, strict=True)
                ]
        finally:
            cursor.close()
        make = self._row._make
        return [
            make(v if p is None else p(v) for p, v in zip(processors, row, strict=True))
            for row in raw
        ]

    def first(self, conn: Conn, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def run(self, conn: Conn, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows: the number of rows it touched."""
        cursor = self._execute(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()
