"""When the bridge tells a person: `Alerter.notify(kind)` where it happens (a delivery turned
dead, MeetBit refused the bridge's keys, a 429 pause of over a minute). At most one message
per kind per `WINDOW` across every process on the ledger (`ledger.alerts`), the next one
counting what was held back. Everything runs on a background thread of the process: a slow
or failing receiver, or a busy ledger, is logged and never delays or fails a webhook.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

from bridge.alerts import KINDS, AlertClient, AlertFailed, message
from bridge.errors import LedgerUnavailable
from bridge.ledger import Ledger

log = logging.getLogger(__name__)

# At most one message per kind in this many seconds, whatever the number of processes.
WINDOW = 15 * 60.0
# A 429 pause longer than this is worth a message.
LONG_PAUSE = 60.0


class Alerter:
    """Posts alerts to `url` (None: alerts are off and `notify` does nothing)."""

    def __init__(self, ledger: Ledger, url: str | None, *, origin: str | None = None) -> None:
        self.ledger = ledger
        self.origin = origin
        self._client = AlertClient(url) if url else None
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def notify(self, kind: str) -> None:
        """One occurrence of `kind` (a name in `bridge.alerts.KINDS`); returns at once."""
        if kind not in KINDS:
            raise ValueError(f"unknown alert kind {kind!r}")
        if self._client is None:
            return
        with self._done:
            self._pending += 1
        self._queue.put(kind)
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._run, name="alerts", daemon=True).start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every occurrence noted so far is handled; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        if self._client is None:
            return
        self.flush(timeout=2.0)
        with self._lock:
            if self._pid == os.getpid():
                self._queue.put(None)
                self._pid = 0
        self._client.close()

    def _run(self) -> None:
        while True:
            kind = self._queue.get()
            if kind is None:
                return
            try:
                self._send(kind)
            except Exception:  # the thread must outlive anything
                log.exception("alert %s failed", kind)
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def _send(self, kind: str) -> None:
        assert self._client is not None
        try:
            count = self.ledger.alerts.occurred(kind, window=WINDOW)
        except LedgerUnavailable as exc:
            log.warning("alert %s not sent: the ledger is unavailable (%s)", kind, exc.detail)
            return
        if count is None:
            return  # one went out within the window; this one is counted in the next
        try:
            self._client.post(message(kind, count, self.origin))
        except AlertFailed as exc:
            log.warning("alert %s not delivered: %s", kind, exc)
        else:
            log.info("alert %s sent (count %d)", kind, count)
