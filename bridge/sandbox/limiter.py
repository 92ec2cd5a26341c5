"""MeetBit's rate limits: per Client (key id) and for the whole Tenant (every key's calls, other
apps' included), a lock-out after a 429 that grows while the client keeps knocking, and the
rate-limit headers on every answer.

Two ways of counting (`SandboxConfig.window`):

- `calendar` (the default): calls counted per calendar second of arrival, as MeetBit counts
  (`RateLimit-Reset` is the time to the next second). Strict: the limit-th + 1 call in any
  calendar second is refused, whatever the spacing.
- `sliding`: at most the limit in any one-second span of arrivals, a stricter reading.

Headers (`SandboxConfig.headers`): `draft06` (MeetBit's documented `RateLimit-Limit`,
`-Remaining`, `-Reset`), `draft` (the current IETF draft's `RateLimit` + `RateLimit-Policy`),
`both`, or `none`. `RateLimit-Limit` is the client's limit; `Remaining` is what is left of the
tighter of the client's and the tenant's budgets.

https://meetbit.mintlify.app/api-reference/rate-limiting

`SlidingWindow` is the plain N-requests-per-T-seconds limit the vendor fakes enforce
(HubSpot's 100 per 10 s).
"""

from __future__ import annotations

import math
import threading
from collections import deque

from bridge.sandbox.config import SandboxConfig

__all__ = ["TENANT", "RateLimiter", "SlidingWindow"]

# The key under which the tenant's own count is kept (no key id can be empty).
TENANT = ""


def _window(rate: float) -> tuple[int, float]:
    """(requests allowed, window seconds) for a rate in requests per second."""
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


class RateLimiter:
    """Admits or refuses one request per call; reads the limits from the (live) config."""

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

    def _used(self, key: str, now: float, window: float) -> tuple[int, float]:
        """(calls counted now, seconds until the count goes down) for `key`."""
        arrivals = self._arrivals.setdefault(key, deque())
        if self.config.window == "calendar":
            start = math.floor(now / window) * window
            while arrivals and arrivals[0] < start:
                arrivals.popleft()
            return len(arrivals), start + window - now
        while arrivals and arrivals[0] <= now - window:
            arrivals.popleft()
        reset = arrivals[0] + window - now if arrivals else window
        return len(arrivals), reset

    def admit(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        """(admitted, headers to send). Call it before looking at the request: MeetBit counts
        invalid requests too; a refused one only extends the lock-out."""
        client_rate, tenant_rate = self.config.rate_limit, self.config.tenant_limit
        if client_rate <= 0 and tenant_rate <= 0:
            return True, {}
        budgets: list[tuple[str, int, float]] = []
        if client_rate > 0:
            budgets.append((key, *_window(client_rate)))
        if tenant_rate > 0:
            budgets.append((TENANT, *_window(tenant_rate)))
        retry_after = self.config.retry_after
        with self._lock:
            used = [(k, allowed, *self._used(k, now, w)) for k, allowed, w in budgets]
            full = any(n >= allowed for _, allowed, n, _ in used)
            if self._locked_until.get(key, 0.0) > now or full:
                # Retrying during a lock-out makes it longer, as MeetBit warns.
                until = now + retry_after
                self._locked_until[key] = until
                headers = self._headers(used, remaining=0, reset=until - now)
                headers["Retry-After"] = str(retry_after)
                return False, headers
            for k, _allowed, _n, _reset in used:
                self._arrivals[k].append(now)
            remaining = min(allowed - n - 1 for _, allowed, n, _ in used)
            reset = max(r for _, _, _, r in used)
            return True, self._headers(used, remaining=remaining, reset=reset)

    def _headers(
        self, used: list[tuple[str, int, int, float]], *, remaining: int, reset: float
    ) -> dict[str, str]:
        form = self.config.headers
        client = next((u for u in used if u[0] != TENANT), None)
        tenant = next((u for u in used if u[0] == TENANT), None)
        limit = client[1] if client is not None else used[0][1]
        reset_s = max(1, math.ceil(reset - 1e-9))
        out: dict[str, str] = {}
        if form in ("draft06", "both"):
            out["RateLimit-Limit"] = str(limit)
            out["RateLimit-Remaining"] = str(max(0, remaining))
            out["RateLimit-Reset"] = str(reset_s)
        if form in ("draft", "both"):
            policies = []
            for name, entry in (("client", client), ("tenant", tenant)):
                if entry is not None:
                    window = _window(
                        self.config.rate_limit if name == "client" else self.config.tenant_limit
                    )[1]
                    policies.append(f'"{name}";q={entry[1]};w={max(1, round(window))}')
            out["RateLimit-Policy"] = ", ".join(policies)
            out["RateLimit"] = (
                f'"{"client" if client else "tenant"}";r={max(0, remaining)};t={reset_s}'
            )
        return out


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
