"""Every MeetBit call of a delivery as its own row; deliveries found by their event.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            sa.String(40),
            sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_attempts_delivery"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("process", sa.String(200), nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("sent", sa.Boolean, nullable=False),
        sa.Column("meetbit_status", sa.Integer),
        sa.Column("outcome", sa.String(32)),
        sa.Column("error_kind", sa.String(64)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_attempts_delivery", "attempts", ["delivery_id", "id"])
    op.create_index("ix_deliveries_event", "deliveries", ["calendar_id", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_event", table_name="deliveries")
    op.drop_index("ix_attempts_delivery", table_name="attempts")
    op.drop_table("attempts")
