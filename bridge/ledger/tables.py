"""The ledger's tables as SQLAlchemy Core metadata; migrations under `migrations/` create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from bridge.core.delivery import STATUSES, WRITE_BACK_STATUSES
from bridge.core.limits import (
    MAX_DELIVERY_ID,
    MAX_KEY_LENGTH,
    MAX_LINK_KEY,
    MAX_RECORD,
    MAX_REQUEST_ID,
)
from bridge.ledger.packing import PackedJSON

# Alembic's own bookkeeping table, named so it cannot clash with another application's
# migrations in a shared database.
VERSION_TABLE = "bridge_alembic_version"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger times must be timezone-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> sa.JSON:
    # Python None is SQL NULL, not the JSON literal `null`.
    return sa.JSON(none_as_null=True)


metadata = sa.MetaData()

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(MAX_DELIVERY_ID), primary_key=True),
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
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("meetbit_status", sa.Integer),
    # No event column: a delivery's MeetBit event is its event's `canceled_events` row,
    # stored once however many deliveries name it (see `deliveries.COLUMNS`).
    sa.Column("error", _json()),
    sa.Column("sent", sa.Boolean, nullable=False),
    # The stored webhook request (webhook_requests.id) the delivery came from. Not a foreign
    # key: the request row is written after its deliveries, in the same transaction, and
    # only when one of them is new; purge removes a request once none of its deliveries is left.
    sa.Column("request_id", sa.String(MAX_DELIVERY_ID)),
    # The webhook's X-Request-Id (the sender's, or the bridge's own): what the logs call
    # request_id and MeetBit is sent.
    sa.Column("x_request_id", sa.String(MAX_REQUEST_ID)),
    sa.Column("traceparent", sa.String(64)),
    sa.UniqueConstraint("route", "idempotency_key", "seq", name="uq_deliveries_key"),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="ck_deliveries_status"
    ),
    sa.CheckConstraint("seq >= 0", name="ck_deliveries_seq"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_created", "created_at", "id"),
    # Finds another delivery of the same event in flight (one MeetBit call per event).
    sa.Index("ix_deliveries_event", "calendar_id", "event_id"),
    # The console's log: newest first under any one filter, and its search, on a big ledger.
    sa.Index("ix_deliveries_status_created", "status", "created_at", "id"),
    sa.Index("ix_deliveries_route_created", "route", "created_at", "id"),
    sa.Index("ix_deliveries_outcome_created", "outcome", "created_at", "id"),
    # The overview's queue depth and oldest queued delivery, counted from the index alone.
    sa.Index("ix_deliveries_status_outcome", "status", "outcome", "created_at"),
    sa.Index("ix_deliveries_idempotency_key", "idempotency_key"),
    sa.Index("ix_deliveries_event_id", "event_id"),
    sa.Index("ix_deliveries_request", "request_id"),
    # The on-call person's way from a log line (or a sender's support ticket) to its deliveries.
    sa.Index("ix_deliveries_x_request_id", "x_request_id"),
)

# One row per MeetBit call of a delivery (the delivery row holds the latest word).
attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(MAX_DELIVERY_ID),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_attempts_delivery"),
        nullable=False,
    ),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("process", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("sent", sa.Boolean, nullable=False),
    sa.Column("meetbit_status", sa.Integer),
    sa.Column("outcome", sa.String(32)),
    sa.Column("error_kind", sa.String(64)),
    sa.Column("error", sa.Text),
    # `call` (a MeetBit call) or `remap` (a replay that mapped the stored request again).
    sa.Column("kind", sa.String(16), nullable=False, server_default="call"),
    sa.Index("ix_attempts_delivery", "delivery_id", "id"),
)

# Each webhook that recorded a delivery, as received (credentials redacted before it is
# written, see bridge/delivery/capture.py) and the answer its sender got.
webhook_requests = sa.Table(
    "webhook_requests",
    metadata,
    sa.Column("id", sa.String(MAX_DELIVERY_ID), primary_key=True),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    # [[name, value], ...] in the order received, names lower-cased.
    sa.Column("headers", _json(), nullable=False),
    sa.Column("content_type", sa.String(200), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("answer_status", sa.Integer),
    sa.Column("answer_body", sa.Text),
    sa.Column("answered_at", UTCDateTime),
    sa.Index("ix_webhook_requests_received", "received_at"),
)

# A replay of many deliveries (the console's "Replay all"), with its progress, readable from
# every process; whoever holds the lease works through the items.
bulk_replays = sa.Table(
    "bulk_replays",
    metadata,
    sa.Column("id", sa.String(MAX_DELIVERY_ID), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    # {outcome word: how many}, as `deliveries replay` prints them.
    sa.Column("counts", _json(), nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("lease_until", UTCDateTime),
    sa.Index("ix_bulk_replays_created", "created_at"),
)

bulk_replay_items = sa.Table(
    "bulk_replay_items",
    metadata,
    sa.Column(
        "replay_id",
        sa.String(MAX_DELIVERY_ID),
        sa.ForeignKey("bulk_replays.id", ondelete="CASCADE", name="fk_bulk_replay_items_replay"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, primary_key=True),
    # Not a foreign key: a replay's record outlives a delivery that purge removed.
    sa.Column("delivery_id", sa.String(MAX_DELIVERY_ID), nullable=False),
    sa.Column("outcome", sa.String(64)),
)

# One row per alert kind: when its last message went out, and what happened since (so that
# every process together sends at most one per kind per window).
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("last_sent_at", UTCDateTime),
    sa.Column("pending", sa.Integer, nullable=False),
)

canceled_events = sa.Table(
    "canceled_events",
    metadata,
    sa.Column("calendar_id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.String(40), nullable=False),
    # The MeetBit Event as the cancel answered it, the one copy the ledger keeps (deflated).
    sa.Column("event", PackedJSON),
    sa.Column("canceled_at", UTCDateTime, nullable=False),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("key", sa.String(MAX_LINK_KEY), primary_key=True),
    sa.Column("calendar_id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

webhook_receipts = sa.Table(
    "webhook_receipts",
    metadata,
    sa.Column("webhook_id", sa.String(MAX_KEY_LENGTH), primary_key=True),
    sa.Column("received_at", UTCDateTime, nullable=False, index=True),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    # One row per MeetBit account (see bridge/core/rate.py): the window (epoch seconds) of the
    # latest slot given and how many of its slots are given, the end of a hold (429,
    # `RateLimit-Remaining: 0`), the limit MeetBit's headers last gave (calls per second,
    # 0: none heard), and how many of the next window's slots are given already (`carry`).
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("used", sa.Integer, nullable=False),
    sa.Column("paused_until", sa.Float, nullable=False),
    sa.Column("heard", sa.Float, nullable=False),
    sa.Column("carry", sa.Integer, nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(200), primary_key=True),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)

# Named leases: work that one process at a time does across every instance on the ledger (the
# scheduled purge), with when it was last done so that instances share one schedule.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200)),
    sa.Column("until", UTCDateTime),
    sa.Column("done_at", UTCDateTime),
)

# What a delivery of a route with `write_back` will need once it is final: each entry's
# record (rendered at intake), the outcomes it is made on, and the part of the webhook its
# text reads. Written with the delivery, so nothing about the webhook has to be kept elsewhere.
write_back_plans = sa.Table(
    "write_back_plans",
    metadata,
    sa.Column(
        "delivery_id",
        sa.String(MAX_DELIVERY_ID),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_write_back_plans_delivery"),
        primary_key=True,
    ),
    sa.Column("entries", _json(), nullable=False),
    sa.Column("context", _json()),
)

# One write-back job per (delivery, entry), created with the delivery's final outcome.
write_backs = sa.Table(
    "write_backs",
    metadata,
    sa.Column("id", sa.String(MAX_DELIVERY_ID), primary_key=True),
    sa.Column(
        "delivery_id",
        sa.String(MAX_DELIVERY_ID),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE", name="fk_write_backs_delivery"),
        nullable=False,
    ),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("entry", sa.Integer, nullable=False),
    sa.Column("to", sa.String(40), nullable=False),
    sa.Column("record", sa.String(MAX_RECORD), nullable=False),
    sa.Column("calendar_id", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    # The write may have reached the vendor: look for the marker before writing again.
    sa.Column("sent", sa.Boolean, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_id", sa.String(200)),
    # At most one write-back per (route entry, record, event), ever: a sender firing again
    # because of the bridge's own note finds its write-back done.
    sa.UniqueConstraint(
        "route", "entry", "record", "calendar_id", "event_id", name="uq_write_backs_once"
    ),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in WRITE_BACK_STATUSES) + ")",
        name="ck_write_backs_status",
    ),
    sa.Index("ix_write_backs_due", "status", "next_attempt_at"),
    sa.Index("ix_write_backs_delivery", "delivery_id"),
)

# The write-back rate limit per vendor host, shared by every worker (GCRA, like MeetBit's):
# the next free start and the end of a 429 pause, epoch seconds.
write_back_rates = sa.Table(
    "write_back_rates",
    metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("tat", sa.Float, nullable=False),
    sa.Column("paused_until", sa.Float, nullable=False),
)

# MeetBit calls made by worker processes, by result: a counter the web processes' /metrics
# reads, since a worker has no scrape endpoint of its own (and on many platforms cannot have
# one). Never decreases: purge leaves it alone.
worker_calls = sa.Table(
    "worker_calls",
    metadata,
    sa.Column("result", sa.String(64), primary_key=True),
    sa.Column("calls", sa.BigInteger, nullable=False),
)
