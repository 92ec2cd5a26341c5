"""MeetBit's per-key rate limit: a sliding one-second window, a lock-out after a 429 that grows
while the client keeps knocking, and the `RateLimit-*` headers on every answer.

https://meetbit.mintlify.app/api-reference/rate-limiting
"""

from __future__ import annotations

import math
import threading
from collections import deque

from bridge.sandbox.config import SandboxConfig

__all__ = ["RateLimiter"]


class RateLimiter:
    """Admits or refuses one request per call; reads the limit from the (live) config."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._arrivals: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def clear(self) -> None:
        """Forget every key's arrivals and lock-out."""
        with self._lock:
            self._arrivals.clear()
            self._locked_until.clear()

    def _window(self) -> tuple[int, float]:
        """(requests allowed, window seconds) for the configured rate."""
        rate = self.config.rate_limit
        if rate >= 1:
            return math.floor(rate), 1.0
        return 1, 1.0 / rate

    def admit(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        """(admitted, headers to send). Call it before looking at the request: MeetBit counts
        invalid requests too; a refused one only extends the lock-out."""
        if self.config.rate_limit <= 0:
            return True, {}
        allowed, window = self._window()
        retry_after = self.config.retry_after
        with self._lock:
            arrivals = self._arrivals.setdefault(key, deque())
            while arrivals and arrivals[0] <= now - window:
                arrivals.popleft()
            if self._locked_until.get(key, 0.0) > now or len(arrivals) >= allowed:
                # Retrying during a lock-out makes it longer, as MeetBit warns.
                until = now + retry_after
                self._locked_until[key] = until
                return False, {
                    "RateLimit-Limit": str(allowed),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(max(1, math.ceil(until - now))),
                    "Retry-After": str(retry_after),
                }
            arrivals.append(now)
            return True, {
                "RateLimit-Limit": str(allowed),
                "RateLimit-Remaining": str(max(0, allowed - len(arrivals))),
                "RateLimit-Reset": str(max(1, math.ceil(arrivals[0] + window - now))),
            }
