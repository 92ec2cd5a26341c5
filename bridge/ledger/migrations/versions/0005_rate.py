"""MeetBit rate limits per account in calendar-second windows, with the limit the headers gave.

The table holds only state that is rebuilt within a second (the windows' slots, holds that last
at most as long as MeetBit's answers say, the last heard limit), so it is recreated rather than
converted: the first call after the upgrade starts a fresh window.

Revision ID: 0005_rate
Revises: 0007_request_ids
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_rate"
down_revision: str | None = "0007_request_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("rate_limits")
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
        sa.Column("heard", sa.Float, nullable=False),
        sa.Column("carry", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
        sa.Column("last_sent", sa.Float, nullable=False, server_default="0"),
    )
