"""Bulk replays: a replay of many deliveries recorded with its items, worked through by
whichever process holds its lease, its progress readable from every process.

Each item's outcome is written with the replay's count in one transaction, by the lease's
holder only, so the figures never run ahead of the items or count one twice; a process that
dies leaves a lease that expires, and another takes the replay over where it stopped.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.tables import bulk_replay_items, bulk_replays

_b = bulk_replays.c
_i = bulk_replay_items.c


def new_replay_id() -> str:
    return "rpl_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class BulkReplayRecord:
    """A bulk replay as stored: `done` of `total` items replayed, `counts` per outcome word,
    `finished_at` once every item is done."""

    id: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    total: int
    done: int
    counts: dict[str, int]
    owner: str | None
    lease_until: datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class ReplayItem:
    position: int
    delivery_id: str
    outcome: str | None


def _record(row: Any) -> BulkReplayRecord:
    values = dict(row._mapping)
    values["counts"] = {str(k): int(v) for k, v in (values["counts"] or {}).items()}
    return BulkReplayRecord(**values)


class BulkReplays:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, delivery_ids: Sequence[str]) -> BulkReplayRecord:
        """Record a bulk replay of these deliveries, in order, none done yet."""
        at = now()
        replay_id = new_replay_id()
        finished = at if not delivery_ids else None
        with self.db.write() as conn:
            conn.execute(
                sa.insert(bulk_replays).values(
                    id=replay_id,
                    created_at=at,
                    updated_at=at,
                    finished_at=finished,
                    total=len(delivery_ids),
                    done=0,
                    counts={},
                    owner=None,
                    lease_until=None,
                )
            )
            if delivery_ids:
                conn.execute(
                    sa.insert(bulk_replay_items),
                    [
                        {"replay_id": replay_id, "position": n, "delivery_id": d, "outcome": None}
                        for n, d in enumerate(delivery_ids)
                    ],
                )
        found = self.get(replay_id)
        assert found is not None
        return found

    def get(self, replay_id: str) -> BulkReplayRecord | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(bulk_replays).where(_b.id == replay_id)).first()
        return None if row is None else _record(row)

    def items(self, replay_id: str) -> list[ReplayItem]:
        query = (
            sa.select(_i.position, _i.delivery_id, _i.outcome)
            .where(_i.replay_id == replay_id)
            .order_by(_i.position)
        )
        with self.db.read() as conn:
            return [ReplayItem(*row) for row in conn.execute(query).all()]

    def claim(self, replay_id: str, owner: str, *, lease: float) -> bool:
        """Take (or keep) the lease of an unfinished replay: True unless another live owner
        holds it."""
        at = now()
        with self.db.write() as conn:
            touched = conn.execute(
                sa.update(bulk_replays)
                .where(
                    _b.id == replay_id,
                    _b.finished_at.is_(None),
                    sa.or_(_b.owner.is_(None), _b.owner == owner, _b.lease_until <= at),
                )
                .values(owner=owner, lease_until=at + timedelta(seconds=lease), updated_at=at)
            ).rowcount
        return bool(touched)

    def stalled(self, *, limit: int = 10) -> list[str]:
        """Unfinished replays nobody holds a live lease on, oldest first."""
        at = now()
        query = (
            sa.select(_b.id)
            .where(
                _b.finished_at.is_(None),
                sa.or_(_b.lease_until.is_(None), _b.lease_until <= at),
            )
            .order_by(_b.created_at)
            .limit(limit)
        )
        with self.db.read() as conn:
            return list(conn.execute(query).scalars())

    def next_item(self, replay_id: str) -> ReplayItem | None:
        """The first item not replayed yet."""
        query = (
            sa.select(_i.position, _i.delivery_id, _i.outcome)
            .where(_i.replay_id == replay_id, _i.outcome.is_(None))
            .order_by(_i.position)
            .limit(1)
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else ReplayItem(*row)

    def done(
        self, replay_id: str, position: int, outcome: str, owner: str, *, lease: float
    ) -> bool:
        """Record one item's outcome and count it, renewing the lease; False (nothing
        written) when `owner` no longer holds the lease or the item was already done."""
        at = now()
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(_b.owner, _b.done, _b.total, _b.counts)
                .where(_b.id == replay_id)
                .with_for_update()
            ).first()
            if row is None or row.owner != owner:
                return False
            touched = conn.execute(
                sa.update(bulk_replay_items)
                .where(_i.replay_id == replay_id, _i.position == position, _i.outcome.is_(None))
                .values(outcome=outcome)
            ).rowcount
            if not touched:
                return False
            counts = dict(row.counts or {})
            counts[outcome] = int(counts.get(outcome, 0)) + 1
            done = row.done + 1
            conn.execute(
                sa.update(bulk_replays)
                .where(_b.id == replay_id)
                .values(
                    done=done,
                    counts=counts,
                    updated_at=at,
                    lease_until=at + timedelta(seconds=lease),
                    finished_at=at if done >= row.total else None,
                )
            )
        return True
