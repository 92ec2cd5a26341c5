"""Slows anyone guessing the admin token: after `limit` wrong tokens from one address within
`window` seconds, every admin request from that address is answered 429 until the oldest of
them is `window` old. A right token is refused too while the address is held: otherwise a
guesser would still learn, from the answer, which guess was right.

Counted per process (each gunicorn worker keeps its own), so N workers allow N x `limit`
guesses per window: slowed from thousands a second to a few a minute, which is the point.
The address is the peer's (REMOTE_ADDR); behind a platform router every client shares the
router's, so a guesser there holds everyone off the admin API for a window, not the hooks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Addresses remembered at most; the quietest are forgotten first, so a flood of addresses
# costs memory, not correctness for the others.
MAX_ADDRESSES = 10_000


class FailedTokens:
    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it may now."""
        with self._lock:
            failures = self._recent(address)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - self._clock()))

    def failed(self, address: str) -> None:
        with self._lock:
            failures = self._recent(address)
            if failures is None:
                if len(self._failures) >= MAX_ADDRESSES:
                    del self._failures[next(iter(self._failures))]
                failures = self._failures[address] = deque(maxlen=self.limit)
            failures.append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self._clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures
