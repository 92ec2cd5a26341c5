"""Write-backs: each route entry's plan kept with its delivery, one job per (delivery, entry)
made once the delivery is final, and the per-host rate limit the worker shares.

Revision ID: 0004_write_backs
Revises: 0006_scale
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004_write_backs"
down_revision: str | None = "0006_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("pending", "in_flight", "succeeded", "failed", "dead")


def _time(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "write_back_plans",
        sa.Column(
            "delivery_id",
            sa.String(40),
            sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_write_back_plans_delivery"),
            primary_key=True,
        ),
        sa.Column("entries", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("context", sa.JSON(none_as_null=True)),
    )
    op.create_table(
        "write_backs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.String(40),
            sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_write_backs_delivery"),
            nullable=False,
        ),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("entry", sa.Integer, nullable=False),
        sa.Column("to", sa.String(40), nullable=False),
        sa.Column("record", sa.String(200), nullable=False),
        sa.Column("calendar_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        _time("created_at"),
        _time("updated_at"),
        _time("expires_at"),
        _time("next_attempt_at", nullable=True),
        _time("lease_until", nullable=True),
        sa.Column("sent", sa.Boolean, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_id", sa.String(200)),
        sa.UniqueConstraint(
            "route", "entry", "record", "calendar_id", "event_id", name="uq_write_backs_once"
        ),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in _STATUSES) + ")",
            name="ck_write_backs_status",
        ),
    )
    op.create_index("ix_write_backs_due", "write_backs", ["status", "next_attempt_at"])
    op.create_index("ix_write_backs_delivery", "write_backs", ["delivery_id"])
    op.create_table(
        "write_back_rates",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("write_back_rates")
    op.drop_index("ix_write_backs_delivery", table_name="write_backs")
    op.drop_index("ix_write_backs_due", table_name="write_backs")
    op.drop_table("write_backs")
    op.drop_table("write_back_plans")
