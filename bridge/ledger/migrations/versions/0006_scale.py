"""The MeetBit event stored once, deflated: deliveries name it by their event's
`canceled_events` row instead of holding a copy; PostgreSQL vacuums the busy tables sooner;
named leases (one scheduled purge at a time across instances).

Existing rows are converted: every delivery's event moves to its event's canceled row (one is
made where a canceled delivery has none), each stored as `bridge.ledger.packing` packs it, and
the deliveries' own copies go.

Revision ID: 0006_scale
Revises: 0003b_console_queue
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from bridge.ledger.packing import pack, unpack

revision: str = "0006_scale"
down_revision: str | None = "0003b_console_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000
_CANCELED = "('canceled', 'already_canceled')"
# Autovacuum's default waits for 20 % of a table to be dead rows: two million on a ten-million
# row ledger. Purge deletes in batches and the hot path updates every row a few times, so
# these tables are vacuumed (and analysed) after 2 % instead.
_VACUUM_SOONER = ("deliveries", "attempts", "canceled_events")
_VACUUM_OPTIONS = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"


def _canceled(event_type: sa.types.TypeEngine[Any], name: str = "event") -> sa.TableClause:
    return sa.table(
        "canceled_events",
        sa.column("calendar_id", sa.BigInteger),
        sa.column("event_id", sa.BigInteger),
        sa.column(name, event_type),
    )


def _convert(source: str, target: str, convert: Any, source_type: Any, target_type: Any) -> None:
    """Copy canceled_events.`source` into `target` row by row through `convert`, in batches
    walked by primary key (a million rows never sit in memory at once)."""
    conn = op.get_bind()
    read = _canceled(source_type, source)
    write = _canceled(target_type, target)
    update = (
        sa.update(write)
        .where(
            write.c.calendar_id == sa.bindparam("k_calendar_id"),
            write.c.event_id == sa.bindparam("k_event_id"),
        )
        .values({target: sa.bindparam("v_value", type_=target_type)})
    )
    after = (-1, -1)
    while True:
        rows = conn.execute(
            sa.select(read.c.calendar_id, read.c.event_id, read.c[source])
            .where(
                sa.tuple_(read.c.calendar_id, read.c.event_id) > after, read.c[source].is_not(None)
            )
            .order_by(read.c.calendar_id, read.c.event_id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        # (A JSON literal null, read as None, stays NULL.)
        values = [
            {"k_calendar_id": r[0], "k_event_id": r[1], "v_value": convert(r[2])}
            for r in rows
            if r[2] is not None
        ]
        if values:
            conn.execute(update, values)
        after = (rows[-1][0], rows[-1][1])


def upgrade() -> None:
    # Every canceled delivery's event gets its canceled row (the bridge always wrote one; this
    # only guards rows from before that), then the row takes an event from a delivery if it
    # has none of its own.
    op.execute(
        f"""INSERT INTO canceled_events (calendar_id, event_id, source, event, canceled_at)
        SELECT d.calendar_id, d.event_id, 'bridge', NULL, MIN(d.updated_at) FROM deliveries d
        WHERE d.outcome IN {_CANCELED} AND d.calendar_id IS NOT NULL AND d.event_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM canceled_events c
                        WHERE c.calendar_id = d.calendar_id AND c.event_id = d.event_id)
        GROUP BY d.calendar_id, d.event_id"""
    )
    # (The JSON literal null, which rows written outside the bridge may hold, counts as none.)
    op.execute(
        """UPDATE canceled_events SET event = (
            SELECT d.event FROM deliveries d
            WHERE d.calendar_id = canceled_events.calendar_id
              AND d.event_id = canceled_events.event_id
              AND d.event IS NOT NULL AND CAST(d.event AS TEXT) <> 'null'
            ORDER BY d.updated_at LIMIT 1)
        WHERE event IS NULL OR CAST(event AS TEXT) = 'null'"""
    )
    op.add_column("canceled_events", sa.Column("event_packed", sa.LargeBinary))
    _convert("event", "event_packed", pack, sa.JSON(), sa.LargeBinary())
    # Native DROP/RENAME COLUMN on both (SQLite 3.35+): no copy of the table's indexes.
    op.drop_column("canceled_events", "event")
    op.alter_column("canceled_events", "event_packed", new_column_name="event")
    op.drop_column("deliveries", "event")
    if op.get_bind().dialect.name == "postgresql":
        for table in _VACUUM_SOONER:
            op.execute(f"ALTER TABLE {table} SET ({_VACUUM_OPTIONS})")
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200)),
        sa.Column("until", sa.DateTime(timezone=True)),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("leases")
    if op.get_bind().dialect.name == "postgresql":
        for table in _VACUUM_SOONER:
            op.execute(
                f"ALTER TABLE {table} RESET "
                "(autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)"
            )
    op.add_column("canceled_events", sa.Column("event_json", sa.JSON))
    _convert(
        "event",
        "event_json",
        lambda v: unpack(bytes(v)),
        sa.LargeBinary(),
        sa.JSON(none_as_null=True),
    )
    op.drop_column("canceled_events", "event")
    op.alter_column("canceled_events", "event_json", new_column_name="event")
    op.add_column("deliveries", sa.Column("event", sa.JSON))
    op.execute(
        f"""UPDATE deliveries SET event = (
            SELECT c.event FROM canceled_events c
            WHERE c.calendar_id = deliveries.calendar_id AND c.event_id = deliveries.event_id)
        WHERE outcome IN {_CANCELED}"""
    )
