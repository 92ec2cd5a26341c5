"""The initial ledger: deliveries, canceled events, links, webhook receipts, rate limits, workers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "in_flight", "succeeded", "failed", "dead", "ignored")


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(500), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("calendar_id", sa.BigInteger),
        sa.Column("event_id", sa.BigInteger),
        sa.Column("note", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("max_age", sa.Float, nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _time("expires_at"),
        _time("next_attempt_at", nullable=True),
        _time("lease_until", nullable=True),
        sa.Column("last_error", sa.Text),
        sa.Column("meetbit_status", sa.Integer),
        sa.Column("event", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("sent", sa.Boolean, nullable=False),
        sa.UniqueConstraint("route", "idempotency_key", "seq", name="uq_deliveries_key"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
            name="ck_deliveries_status",
        ),
        sa.CheckConstraint("seq >= 0", name="ck_deliveries_seq"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_created", "deliveries", ["created_at", "id"])

    op.create_table(
        "canceled_events",
        sa.Column("calendar_id", sa.BigInteger, primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("event", sa.JSON),
        _time("canceled_at"),
    )
    op.create_table(
        "links",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("calendar_id", sa.BigInteger, primary_key=True),
        sa.Column("event_id", sa.BigInteger, primary_key=True),
        _time("created_at"),
    )
    op.create_table(
        "webhook_receipts",
        sa.Column("webhook_id", sa.String(200), primary_key=True),
        _time("received_at"),
    )
    op.create_index("ix_webhook_receipts_received_at", "webhook_receipts", ["received_at"])
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
        sa.Column("last_sent", sa.Float, nullable=False, server_default="0"),
    )
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(200), primary_key=True),
        _time("seen_at"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("rate_limits")
    op.drop_index("ix_webhook_receipts_received_at", table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    op.drop_table("links")
    op.drop_table("canceled_events")
    op.drop_index("ix_deliveries_created", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
