"""`meetbit-bridge worker`: finishes what the web processes accepted but did not deliver.

Claims due deliveries from the ledger (several workers may run; the ledger hands each row to
one), delivers them through the same Dispatcher at the shared rate, and heartbeats so the web
processes know someone will retry. SIGTERM finishes the delivery in hand and releases the rest.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable

from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.maintenance import PurgeSchedule
from bridge.delivery.write_backs import WriteBackRunner
from bridge.errors import LedgerUnavailable
from bridge.ledger import Ledger

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0
# How often an idle worker looks for chores (bulk replays whose process stopped).
CHORES_EVERY = 10.0
# After a failed ledger call the worker waits this long, doubling up to the cap (jittered, so
# that several workers do not return at once).
OUTAGE_BACKOFF = 0.5
OUTAGE_BACKOFF_CAP = 30.0


class Worker:
    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        *,
        batch: int = 10,
        idle: float = 0.5,
        worker_id: str | None = None,
        chores: Callable[[], object] | None = None,
        write_backs: WriteBackRunner | None = None,
    ) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.write_backs = write_backs
        self.batch = batch
        self.idle = idle
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.delivered = 0
        self._beat_at = 0.0
        self.chores = chores
        self._chores_at = 0.0
        # BRIDGE_PURGE_EVERY: purges on its own thread, so deliveries go on meanwhile.
        self.purge: PurgeSchedule | None = None

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._beat_at >= HEARTBEAT_EVERY:
            self.ledger.coordination.heartbeat(self.worker_id)
            self._beat_at = now

    def run_once(self) -> int:
        """Attempt up to `batch` due deliveries; returns how many it attempted.

        Each is claimed just before its attempt, never several under one lease: a batch
        claimed at once could outlive its lease while earlier items wait for rate slots, and
        another worker would then claim the rest again."""
        attempted = 0
        while attempted < self.batch and not self.stop.is_set():
            self.heartbeat()
            if self.dispatcher.attempt(None, deadline=None, by="worker") is None:
                break
            attempted += 1
            self.delivered += 1
        return attempted

    def run(self, *, until_idle: bool = False) -> None:
        log.info("worker %s started", self.worker_id)
        outages = 0
        purging = None
        if self.purge is not None:
            purging = threading.Thread(
                target=self.purge.run, args=(self.stop,), name="scheduled purge", daemon=True
            )
            purging.start()
        # Write-backs run in a thread of their own: a slow or down CRM never delays a cancel.
        side: threading.Thread | None = None
        if self.write_backs is not None:
            side = threading.Thread(
                target=self.write_backs.run,
                kwargs={"until_idle": until_idle},
                name="write-backs",
                daemon=True,
            )
            side.start()
        try:
            while not self.stop.is_set():
                try:
                    idle = self.run_once() == 0
                    if idle and until_idle:
                        if self.ledger.queries.counts_by_status().get("pending", 0) == 0:
                            break
                except LedgerUnavailable as exc:
                    # A locked SQLite file or a PostgreSQL restart must not end the worker:
                    # what it has not delivered would wait for someone to restart it.
                    outages += 1
                    wait = min(OUTAGE_BACKOFF_CAP, OUTAGE_BACKOFF * 2 ** (outages - 1))
                    wait *= random.uniform(0.5, 1.0)
                    log.warning(
                        "ledger unavailable (%s); retrying in %.1f s",
                        _cause(exc),
                        wait,
                    )
                    self.stop.wait(wait)
                    continue
                if outages:
                    log.info("ledger available again")
                    outages = 0
                if idle:
                    self._do_chores()
                    self.stop.wait(self.idle)
            if side is not None and until_idle:
                # Idle means the write-backs too: they end once nothing more is due.
                while side.is_alive() and not self.stop.is_set():
                    side.join(0.2)
        finally:
            if purging is not None:
                self.stop.set()  # the purge ends after its batch in hand
                purging.join()
            if side is not None and self.write_backs is not None:
                self.write_backs.stop.set()
                side.join()
            self._leave()
            log.info("worker %s stopped after %d deliveries", self.worker_id, self.delivered)

    def _do_chores(self) -> None:
        """While idle, at most every CHORES_EVERY seconds: work nobody else finishes."""
        now = time.monotonic()
        if self.chores is None or now - self._chores_at < CHORES_EVERY:
            return
        self._chores_at = now
        try:
            self.chores()
        except LedgerUnavailable:
            raise
        except Exception:  # a chore must not end the worker; its deliveries come first
            log.exception("worker chore failed")

    def _leave(self) -> None:
        try:
            self.ledger.coordination.forget_worker(self.worker_id)
        except LedgerUnavailable:
            pass  # its heartbeat goes stale by itself


def _cause(exc: LedgerUnavailable) -> str:
    """The driver's own error, first line only: SQLAlchemy's text would add the statement and
    its parameters (webhook data) to the log."""
    cause = getattr(exc.__cause__, "orig", None) or exc.__cause__
    if cause is None:
        return exc.detail
    lines = str(cause).splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"
