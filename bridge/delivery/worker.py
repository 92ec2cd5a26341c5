"""`meetbit-bridge worker`: finishes what the web processes accepted but did not deliver.

Claims due deliveries from the ledger (several workers may run; the ledger hands each row to
one), delivers them through the same Dispatcher at the shared rate, and heartbeats so the web
processes know someone will retry. SIGTERM finishes the delivery in hand and releases the rest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from bridge.delivery.dispatch import Dispatcher
from bridge.ledger import Ledger

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0


class Worker:
    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        *,
        batch: int = 10,
        idle: float = 0.5,
        worker_id: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.batch = batch
        self.idle = idle
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.delivered = 0
        self._beat_at = 0.0

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
        try:
            while not self.stop.is_set():
                if self.run_once() == 0:
                    counts = self.ledger.queries.counts_by_status()
                    if until_idle and counts.get("pending", 0) == 0:
                        break
                    self.stop.wait(self.idle)
        finally:
            self.ledger.coordination.forget_worker(self.worker_id)
            log.info("worker %s stopped after %d deliveries", self.worker_id, self.delivered)
