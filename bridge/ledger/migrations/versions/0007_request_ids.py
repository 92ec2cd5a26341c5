"""Each delivery keeps the X-Request-Id (and, traced, the traceparent) of the webhook that
recorded it; worker MeetBit calls are counted where the web processes' /metrics reads them.

Revision ID: 0007_request_ids
Revises: 0004_write_backs
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_request_ids"
down_revision: str | None = "0004_write_backs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("x_request_id", sa.String(128)))
    op.add_column("deliveries", sa.Column("traceparent", sa.String(64)))
    op.create_index("ix_deliveries_x_request_id", "deliveries", ["x_request_id"])
    op.create_table(
        "worker_calls",
        sa.Column("result", sa.String(64), primary_key=True),
        sa.Column("calls", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("worker_calls")
    op.drop_index("ix_deliveries_x_request_id", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("traceparent")
        batch.drop_column("x_request_id")
