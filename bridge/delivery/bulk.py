"""Bulk replays for the console's "Replay all": many failed or dead deliveries re-run one by
one at the shared MeetBit rate, with progress any process can read.

The console calls `start_bulk_replay` (records the replay and starts working through it in a
background thread of the calling process; it returns at once) and then polls
`bulk_replay_progress` with the returned id. The work holds a lease in the ledger, renewed
after each item: if the process that started it dies, `meetbit-bridge worker` takes it over
where it stopped (`resume_stalled`), so a replay ends even when the web process does not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.delivery import admin
from bridge.delivery.admin import DeliveryQuery
from bridge.errors import BridgeError, InvalidQuery, NotFound
from bridge.ledger import BulkReplayRecord, ReplayItem

if TYPE_CHECKING:
    from bridge.delivery.service import Bridge

log = logging.getLogger(__name__)

# Seconds the holder of a replay may go without finishing an item before another process
# takes it over: longer than one replay (a sync deadline, 8 s by default, and a slot wait).
LEASE = 60.0
# At most this many deliveries in one bulk replay (the console selects what is in view or
# matches its filters).
MAX_ITEMS = 10_000


@dataclass(frozen=True)
class BulkReplay:
    """A bulk replay's progress: `done` of `total`, the outcome words so far (`canceled`,
    `already_canceled`, `failed`, `not_found`, `queued`, `skipped (<status>)`, `unknown`),
    `finished` once every item is done; `items` (when asked for) each with its outcome."""

    id: str
    created_at: datetime
    total: int
    done: int
    counts: dict[str, int]
    finished: bool
    finished_at: datetime | None
    items: list[ReplayItem] | None = None


def _view(record: BulkReplayRecord, items: list[ReplayItem] | None = None) -> BulkReplay:
    return BulkReplay(
        id=record.id,
        created_at=record.created_at,
        total=record.total,
        done=record.done,
        counts=dict(record.counts),
        finished=record.finished,
        finished_at=record.finished_at,
        items=items,
    )


def owner_name(role: str) -> str:
    return f"{role} {socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def start_bulk_replay(
    bridge: Bridge,
    ids: Sequence[str] = (),
    query: DeliveryQuery | None = None,
    *,
    background: bool = True,
) -> BulkReplay:
    """The console's "Replay all": record a bulk replay of the deliveries named by `ids`, or
    of every failed or dead one matching `query` (as `deliveries replay` selects them), and
    start it in a background thread of this process; returns at once (poll
    `bulk_replay_progress` with its id). Unknown ids count as `unknown`. With
    `background=False` nothing is started here (the worker takes it over)."""
    selection = admin.select_replay(bridge.ledger, ids, query)
    chosen = [d.id for d in selection.deliveries] + list(selection.unknown)
    if len(chosen) > MAX_ITEMS:
        raise InvalidQuery(
            "too many deliveries for one bulk replay",
            errors={"deliveries": [f"at most {MAX_ITEMS}; narrow the filters"]},
        )
    record = bridge.ledger.replays.create(chosen)
    if background and not record.finished:
        owner = owner_name("web")
        if bridge.ledger.replays.claim(record.id, owner, lease=LEASE):
            thread = threading.Thread(
                target=_run_logged,
                args=(bridge, record.id, owner),
                name=f"bulk-replay {record.id}",
                daemon=True,
            )
            thread.start()
    return _view(record)


def bulk_replay_progress(bridge: Bridge, replay_id: str, *, items: bool = False) -> BulkReplay:
    """The console's progress page (poll it): a bulk replay as it stands, from any process;
    `items=True` adds each delivery with its outcome so far. Unknown id: `NotFound`."""
    record = bridge.ledger.replays.get(replay_id) if replay_id.isascii() else None
    if record is None:
        raise NotFound(f"no bulk replay {replay_id[:60]!r}")
    return _view(record, bridge.ledger.replays.items(replay_id) if items else None)


def run_bulk_replay(bridge: Bridge, replay_id: str, owner: str, *, by: str = "web") -> bool:
    """Work through a bulk replay whose lease `owner` holds, item by item, until it is done
    or the lease is lost; True when this call finished it."""
    replays = bridge.ledger.replays
    worker_alive = bridge.worker_alive()
    while True:
        item = replays.next_item(replay_id)
        if item is None:
            return True
        outcome = _replay_item(bridge, item, worker_alive=worker_alive, by=by)
        if not replays.done(replay_id, item.position, outcome, owner, lease=LEASE):
            return False  # taken over meanwhile (this process was too slow): theirs now


def _replay_item(bridge: Bridge, item: ReplayItem, *, worker_alive: bool, by: str) -> str:
    delivery = bridge.ledger.deliveries.get(item.delivery_id)
    if delivery is None:
        return "unknown"
    try:
        return admin.replay_one(bridge, delivery, worker_alive=worker_alive, by=by).outcome
    except BridgeError as exc:  # the ledger or MeetBit refused: the item failed, go on
        log.warning("bulk replay of %s failed: %s", item.delivery_id, exc.detail)
        return "failed"


def _run_logged(bridge: Bridge, replay_id: str, owner: str) -> None:
    try:
        run_bulk_replay(bridge, replay_id, owner)
    except Exception:  # a thread's exception would be printed and lost; the worker resumes
        log.exception("bulk replay %s stopped; the worker takes it over", replay_id)


def resume_stalled(bridge: Bridge, owner: str) -> int:
    """For `meetbit-bridge worker`: take over and finish bulk replays whose holder stopped
    renewing its lease; returns how many it finished."""
    finished = 0
    for replay_id in bridge.ledger.replays.stalled():
        if bridge.ledger.replays.claim(replay_id, owner, lease=LEASE):
            finished += run_bulk_replay(bridge, replay_id, owner, by="worker")
    return finished
