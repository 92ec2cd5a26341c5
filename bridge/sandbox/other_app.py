"""Another app of the sandbox's tenant: it calls at `SandboxConfig.other_app_rate` per second,
at even offsets within each calendar second (so never more than that in any one), and each call
counts against the tenant's limit as any client's does. It makes no HTTP request: it is the
tenant's count that matters, and its calls are kept apart from the log of real ones."""

from __future__ import annotations

import math
import threading
import time

from bridge.sandbox.calls import CallLog
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.limiter import RateLimiter

__all__ = ["OtherApp"]


class OtherApp:
    def __init__(self, config: SandboxConfig, limiter: RateLimiter, log: CallLog) -> None:
        self.config = config
        self.limiter = limiter
        self.log = log
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run in a background thread until `join` (idle while `other_app_rate` is 0)."""
        if self._thread is None or not self._thread.is_alive():
            self.stop.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-other-app", daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self.stop.is_set():
            calls = math.floor(self.config.other_app_rate)
            second = math.floor(time.time())
            if calls <= 0:
                self.stop.wait(0.2)
                continue
            for i in range(calls):
                at = second + (i + 0.5) / calls
                if self.stop.wait(max(0.0, at - time.time())):
                    return
                now = time.time()
                if math.floor(now) != second:
                    break  # this one was late: it would count in the next second; skip it
                admitted, _ = self.limiter.admit(self.config.other_key_id, now)
                self.log.other_app(now, admitted)
            self.stop.wait(max(0.0, second + 1 - time.time()))
