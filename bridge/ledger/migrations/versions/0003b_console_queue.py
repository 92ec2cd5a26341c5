"""The console overview's queue figures from an index alone: deliveries by status and outcome.

The queue (no outcome yet, pending, failed or in flight) is tens of thousands of rows on a
big ledger; counting them, and finding the oldest, read every one of them from the table
(~0.5 s at a million deliveries). With (status, outcome, created_at) both are index ranges.

Revision ID: 0003b_console_queue
Revises: 0003_console
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003b_console_queue"
down_revision: str | None = "0003_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_status_outcome", "deliveries", ["status", "outcome", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_outcome", table_name="deliveries")
