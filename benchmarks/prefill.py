"""A big ledger, fast: `prefill(url, rows)` writes `rows` delivered cancels through the ledger's
own schema (migrated first): each a `succeeded`/`canceled` delivery, its attempt row and its
event's canceled row holding a MeetBit Event as the sandbox answers it, created between
`oldest_days` and `newest_days` ago. The driver's executemany in transactions of `CHUNK`
rows per table, values already in the form the ledger's column types store (so a million
rows take a minute or two, not ten); on SQLite without fsyncs while it fills (a benchmark's
data, made again if lost). The events cycle through 64 packed sandbox Events.

`cached_sqlite(rows, folder)` keeps one filled file per size and hands out copies, so reruns
skip the fill; `python benchmarks/prefill.py --rows 1000000 URL` fills any ledger URL.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.ledger import Ledger
from bridge.ledger.packing import pack
from bridge.ledger.tables import attempts, canceled_events, deliveries
from bridge.sandbox.events import generate_event

CHUNK = 20_000
# Calendar ids of prefilled cancels: disjoint from those a benchmark sends afterwards.
CALENDARS = 500
ROUTES = [f"route-{n}" for n in range(8)]
NOTE = "Deal was marked lost in HubSpot"


def _stamp(dialect: str) -> Any:
    """How the ledger's UTCDateTime stores a time on this backend, without its per-value
    processing (SQLite: naive UTC text, as SQLAlchemy writes it; PostgreSQL: aware)."""
    if dialect == "sqlite":
        return lambda at: at.strftime("%Y-%m-%d %H:%M:%S.%f")
    return lambda at: at


# status, outcome, share: by default every row a delivered cancel.
DELIVERED = [("succeeded", "canceled", 1.0)]


def _rows(
    start: int,
    stop: int,
    total: int,
    rng: random.Random,
    now: datetime,
    span: tuple[float, float],
    dialect: str,
    events: list[bytes],
    mix: list[tuple[str, str | None, float]],
    names: Callable[[int], tuple[str, str]] | None,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    stamp = _stamp(dialect)
    day = timedelta(days=1)
    choice, choices, uniform, bits = rng.choice, rng.choices, rng.uniform, rng.getrandbits
    weights = [share for *_, share in mix]
    d_rows, a_rows, c_rows = [], [], []
    newest, oldest = span
    for n in range(start, stop):
        # Oldest first, as a ledger fills; a little jitter, as concurrent webhooks give.
        at = now - timedelta(days=oldest - (oldest - newest) * (n + uniform(0, 50)) / total)
        t = stamp(at)
        status, outcome, _ = choices(mix, weights)[0] if len(mix) > 1 else mix[0]
        calendar_id, event_id = 1 + n % CALENDARS, 1 + n // CALENDARS
        if names is None:  # as the bridge makes them: random, so index inserts land anywhere
            delivery_id = "dlv_" + base64.urlsafe_b64encode(bits(128).to_bytes(16)).decode()[:22]
            key = str(bits(63))
        else:
            delivery_id, key = names(n)
        sent = status != "ignored"
        failed = "MeetBit failed (500)" if status in ("failed", "dead") else None
        meetbit_status = 200 if status == "succeeded" else (500 if failed else None)
        row = {
            "id": delivery_id, "route": choice(ROUTES), "idempotency_key": key,
            "seq": 0, "calendar_id": calendar_id, "event_id": event_id, "note": NOTE,
            "status": status, "outcome": outcome, "attempts": int(sent), "max_attempts": 10,
            "max_age": 86400.0, "created_at": t, "updated_at": t, "expires_at": stamp(at + day),
            "next_attempt_at": None, "lease_until": None, "last_error": failed,
            "meetbit_status": meetbit_status, "error": None, "sent": sent, "request_id": None,
        }  # fmt: skip
        d_rows.append(tuple(row[c] for c in _D_COLUMNS))
        if sent:
            attempt = {
                "delivery_id": delivery_id, "number": 1, "process": "web bench-host:4242",
                "started_at": t, "finished_at": t, "sent": True,
                "meetbit_status": meetbit_status, "outcome": outcome or status,
                "error_kind": "server_error" if failed else None, "error": failed,
                "kind": "call",
            }  # fmt: skip
            a_rows.append(tuple(attempt[c] for c in _A_COLUMNS))
        if outcome == "canceled":
            c_rows.append((calendar_id, event_id, "bridge", events[n % len(events)], t))
    return d_rows, a_rows, c_rows


# Columns in the order `_rows` gives them (attempts: every column but its serial id).
_D_COLUMNS = [c.name for c in deliveries.c]
_A_COLUMNS = [c.name for c in attempts.c if c.name != "id"]
_C_COLUMNS = [c.name for c in canceled_events.c]


def _insert_sql(table: sa.Table, columns: list[str], dialect: str) -> str:
    marks = ", ".join(["?" if dialect == "sqlite" else "%s"] * len(columns))
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"


def packed_events(count: int = 64) -> list[bytes]:
    """`count` different canceled MeetBit Events as the ledger stores them (packed): the rows
    cycle through them, so each costs what a real event costs without packing a million."""
    return [
        pack(dict(generate_event(1 + n, n), cancel_note=NOTE, deleted_at="2026-11-01T10:00:00Z"))
        for n in range(count)
    ]


def prefill(
    url: str,
    rows: int,
    *,
    seed: int = 7,
    oldest_days: float = 60.0,
    newest_days: float = 31.0,
    progress: bool = False,
    mix: list[tuple[str, str | None, float]] | None = None,
    names: Callable[[int], tuple[str, str]] | None = None,
) -> float:
    """Write `rows` deliveries into the ledger at `url`, by default delivered cancels (`mix`:
    (status, outcome, share) to draw from instead); returns the seconds it took. Every row
    that was sent has its attempt row, every canceled one its event's canceled row. `names`:
    row number -> (delivery id, idempotency key), for ids a benchmark looks up again."""
    began = time.perf_counter()
    ledger = Ledger(url)
    try:
        ledger.ensure_schema()
        rng = random.Random(seed)
        now = datetime.now(UTC)
        events = packed_events()
        dialect = ledger.db.dialect
        sql = [
            _insert_sql(deliveries, _D_COLUMNS, dialect),
            _insert_sql(attempts, _A_COLUMNS, dialect),
            _insert_sql(canceled_events, _C_COLUMNS, dialect),
        ]
        pooled = ledger.db.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            if dialect == "sqlite":
                # Random keys go into big indexes: a page cache that holds them (1 GB at
                # most) instead of SQLite's 2 MB, which would re-read a page per row.
                driver.execute("PRAGMA synchronous = OFF")
                driver.execute("PRAGMA cache_size = -1000000")
            for start in range(0, rows, CHUNK):
                batch = _rows(
                    start, min(rows, start + CHUNK), rows, rng, now, (newest_days, oldest_days),
                    dialect, events, mix or DELIVERED, names,
                )  # fmt: skip
                if dialect == "sqlite":
                    driver.execute("BEGIN IMMEDIATE")
                cursor = driver.cursor()
                for statement, values in zip(sql, batch, strict=True):
                    if values:
                        cursor.executemany(statement, values)
                cursor.close()
                driver.commit()
                if progress:
                    done = min(rows, start + CHUNK)
                    rate = done / (time.perf_counter() - began)
                    print(f"\r  prefilled {done:,}/{rows:,} ({rate:,.0f}/s)", end="", flush=True)
            if progress:
                print()
            if dialect == "postgresql":
                driver.autocommit = True
                for table in ("deliveries", "attempts", "canceled_events"):
                    driver.execute(f"VACUUM ANALYZE {table}")
                driver.autocommit = False
        finally:
            pooled.close()
    finally:
        ledger.dispose()
    return time.perf_counter() - began


def cached_sqlite(rows: int, folder: Path, into: Path) -> float:
    """A copy of a SQLite ledger holding `rows` prefilled cancels at `into`, filled into
    `folder` the first time (kept for the next run); returns the seconds a fill took (0 when
    the cached file was used)."""
    folder.mkdir(parents=True, exist_ok=True)
    cached = folder / f"ledger-{rows}.db"
    took = 0.0
    if not cached.exists():
        partial = folder / f"ledger-{rows}.partial.db"
        for stale in folder.glob(partial.name + "*"):
            stale.unlink()
        took = prefill(f"sqlite:///{partial}", rows, progress=True)
        engine = sa.create_engine(f"sqlite:///{partial}")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        partial.rename(cached)
    shutil.copyfile(cached, into)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    took = prefill(args.url, args.rows, progress=True)
    print(f"prefilled {args.rows:,} delivered cancels in {took:.0f} s")


if __name__ == "__main__":
    main()
