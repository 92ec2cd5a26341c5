"""MeetBit's per-key rate limit: a sliding one-second window, a lock-out after a 429 that grows
while the client keeps knocking, and the `RateLimit-*` headers on every answer
(https://meetbit.mintlify.app/api-reference/rate-limiting); and `SlidingWindow`, the plain
N-requests-per-T-seconds limit the vendor fakes enforce (HubSpot's 100 per 10 s).
"""

from __future__ import annotations

import math
import threading
from collections import deque

from bridge.sandbox.config import SandboxConfig

__all__ = ["RateLimiter", "SlidingWindow"]


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


class SlidingWindow:
    """At most `limit` admitted requests in any `window` seconds, counted strictly over the
    admitted arrivals; a refused request does not count (nor extend anything)."""

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a sliding window needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._arrivals: deque[float] = deque()

    def clear(self) -> None:
        with self._lock:
            self._arrivals.clear()

    def admit(self, now: float) -> tuple[bool, int, float]:
        """(admitted, requests left in the window, seconds until the next slot frees)."""
        with self._lock:
            arrivals = self._arrivals
            while arrivals and arrivals[0] <= now - self.window:
                arrivals.popleft()
            if len(arrivals) >= self.limit:
                return False, 0, max(0.0, arrivals[0] + self.window - now)
            arrivals.append(now)
            return True, self.limit - len(arrivals), 0.0
