"""What the operator console shows: each webhook request as received (credentials redacted)
and its answer, bulk replays and their progress, alert deduplication, the kind of each
attempt, and the indexes that keep the log and the overview fast on a big ledger.

Revision ID: 0003_console
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003_console"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_deliveries_status_created": ["status", "created_at", "id"],
    "ix_deliveries_route_created": ["route", "created_at", "id"],
    "ix_deliveries_outcome_created": ["outcome", "created_at", "id"],
    "ix_deliveries_idempotency_key": ["idempotency_key"],
    "ix_deliveries_event_id": ["event_id"],
    "ix_deliveries_request": ["request_id"],
}


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("request_id", sa.String(40)))
    for name, columns in _INDEXES.items():
        op.create_index(name, "deliveries", columns)
    op.add_column(
        "attempts", sa.Column("kind", sa.String(16), nullable=False, server_default="call")
    )
    op.create_table(
        "webhook_requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("route", sa.String(200), nullable=False),
        _time("received_at"),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("answer_status", sa.Integer),
        sa.Column("answer_body", sa.Text),
        _time("answered_at", nullable=True),
    )
    op.create_index("ix_webhook_requests_received", "webhook_requests", ["received_at"])
    op.create_table(
        "bulk_replays",
        sa.Column("id", sa.String(40), primary_key=True),
        _time("created_at"),
        _time("updated_at"),
        _time("finished_at", nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("owner", sa.String(200)),
        _time("lease_until", nullable=True),
    )
    op.create_index("ix_bulk_replays_created", "bulk_replays", ["created_at"])
    op.create_table(
        "bulk_replay_items",
        sa.Column(
            "replay_id",
            sa.String(40),
            sa.ForeignKey(
                "bulk_replays.id", ondelete="CASCADE", name="fk_bulk_replay_items_replay"
            ),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("delivery_id", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(64)),
    )
    op.create_table(
        "alerts",
        sa.Column("kind", sa.String(32), primary_key=True),
        _time("last_sent_at", nullable=True),
        sa.Column("pending", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("bulk_replay_items")
    op.drop_index("ix_bulk_replays_created", table_name="bulk_replays")
    op.drop_table("bulk_replays")
    op.drop_index("ix_webhook_requests_received", table_name="webhook_requests")
    op.drop_table("webhook_requests")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("kind")
    for name in _INDEXES:
        op.drop_index(name, table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("request_id")
