"""The ledger's hot path on its prepared driver statements against the same statements run
through SQLAlchemy's own execution (`Connection.execute`, compiled cache, RETURNING), in one run.

Run from the repository root: `python tests/perf/bench_ledger.py [--n 2000] [--url URL]`.
One "cancel" is what a new webhook costs the ledger: the duplicate read, then `start` (canceled
check, rate slot, insert claimed) and `complete` (with its attempt row and canceled record).
Prints the cost per cancel both ways and the difference; `prepared.py` stays only while the
difference is over 0.3 ms (README "Performance").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bridge.core.delivery import NewDelivery, canceled
from bridge.ledger import AttemptRecord, Ledger, Slot
from bridge.ledger.database import Database, StatementSource

SLOT = Slot("bench", ceiling=1_000_000.0, max_wait=5.0)


class _Executed:
    """A statement run by `Connection.execute`, with the `Prepared` interface."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self.statement = statement

    def rows(self, conn: Any, params: Mapping[str, Any]) -> list[Any]:
        return list(conn.execute(self.statement, dict(params)).all())

    def first(self, conn: Any, params: Mapping[str, Any]) -> Any:
        return conn.execute(self.statement, dict(params)).first()

    def run(self, conn: Any, params: Mapping[str, Any]) -> int:
        return int(conn.execute(self.statement, dict(params)).rowcount)


class SQLAlchemyDatabase(Database):
    """The ledger's database with every hot statement run through SQLAlchemy's execution."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._executed: dict[object, _Executed] = {}

    @contextmanager
    def fast(self, *, write: bool) -> Iterator[Any]:  # type: ignore[override]
        with self.write() if write else self.read() as conn:
            yield conn

    def prepared(self, source: StatementSource) -> Any:
        found = self._executed.get(source)
        if found is None:
            statement = source if isinstance(source, sa.ClauseElement) else source(self.insert)
            found = self._executed[source] = _Executed(statement)
        return found


def sqlalchemy_ledger(url: str) -> Ledger:
    return Ledger(url, database=SQLAlchemyDatabase(url))


def one_cancel(led: Ledger, i: int) -> None:
    item = NewDelivery(route="bench", idempotency_key=f"k{i}", calendar_id=1, event_id=i, note="x")
    started = led.attempts.start(item, lease=30, slot=SLOT)
    assert started.delivery is not None
    at = datetime.now(UTC)
    led.attempts.complete(
        started.delivery.id,
        canceled({"id": i, "calendar_id": 1, "status": "canceled"}),
        attempt=AttemptRecord(1, "web bench", at, at, sent=True),
        rate_key=SLOT.key,
    )


def per_cancel(led: Ledger, start: int, n: int) -> float:
    began = time.perf_counter()
    for i in range(start, start + n):
        one_cancel(led, i)
    return (time.perf_counter() - began) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="cancels per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", help="ledger URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    prepared = Ledger(url)
    prepared.ensure_schema()
    executed = sqlalchemy_ledger(url)
    results: dict[str, list[float]] = {"prepared": [], "sqlalchemy": []}
    offset = int(time.time() * 1000) % 10**9 * 100  # fresh event ids on a reused database
    try:
        one_cancel(prepared, offset - 1)  # warm both: statements compiled, pools filled
        one_cancel(executed, offset - 2)
        for r in range(args.rounds):  # alternated, so drift hits both alike
            base = offset + r * 2 * args.n
            results["prepared"].append(per_cancel(prepared, base, args.n))
            results["sqlalchemy"].append(per_cancel(executed, base + args.n, args.n))
    finally:
        prepared.dispose()
        executed.dispose()
    p = statistics.median(results["prepared"])
    s = statistics.median(results["sqlalchemy"])
    print(f"ledger hot path per new cancel ({prepared.db.dialect}, median of {args.rounds})")
    print(f"  prepared driver statements  {p:6.3f} ms")
    print(f"  SQLAlchemy Connection       {s:6.3f} ms")
    print(f"  difference                  {s - p:6.3f} ms   ratio {s / p:4.2f}")


if __name__ == "__main__":
    main()
