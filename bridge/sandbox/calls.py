"""What the sandbox was asked: one record per cancel call, and the figures drawn from them
(`/_sandbox/calls`, `/_sandbox/stats`)."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

__all__ = ["CallLog", "max_in_window", "per_calendar_second"]


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most arrivals inside any `window` seconds (sliding over the arrival times)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def per_calendar_second(times: list[float]) -> dict[int, int]:
    """Arrivals per calendar second (epoch second -> count), as MeetBit counts them."""
    return dict(sorted(Counter(math.floor(t) for t in times).items()))


class CallLog:
    """Every cancel call in arrival order; a call's status is None until it is answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._rate_limited = 0
        # The other app's calls (see SandboxConfig.other_app_rate): (arrival, admitted).
        self._other: list[tuple[float, bool]] = []

    def clear(self) -> None:
        with self._lock:
            self._calls = []
            self._rate_limited = 0
            self._other = []

    def other_app(self, at: float, admitted: bool) -> None:
        with self._lock:
            self._other.append((at, admitted))

    def arrived(self, at: float, calendar_id: int, event_id: int, key_id: str) -> dict[str, Any]:
        """Record a call as it arrives; pass the record to `answered` once it has its status."""
        call: dict[str, Any] = {
            "at": at,
            "calendar_id": calendar_id,
            "event_id": event_id,
            "status": None,
            "key_id": key_id,
        }
        with self._lock:
            self._calls.append(call)
        return call

    def answered(self, call: dict[str, Any], status: int) -> None:
        with self._lock:
            call["status"] = status
            if status == 429:
                self._rate_limited += 1

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(call) for call in self._calls]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            calls = [dict(call) for call in self._calls]
            rate_limited = self._rate_limited
            other = list(self._other)
        by_status = Counter("pending" if c["status"] is None else str(c["status"]) for c in calls)
        cancels = Counter(
            f"{c['calendar_id']}/{c['event_id']}" for c in calls if c["status"] == 200
        )
        by_key: dict[str, list[float]] = {}
        for c in calls:
            by_key.setdefault(c["key_id"], []).append(c["at"])
        per_second = {k: per_calendar_second(times) for k, times in sorted(by_key.items())}
        # The tenant counts what it admitted: every call of its keys, the other app's admitted.
        tenant = per_calendar_second(
            [c["at"] for c in calls if c["status"] != 429] + [at for at, ok in other if ok]
        )
        return {
            "calls": len(calls),
            "by_status": dict(sorted(by_status.items())),
            "max_calls_in_any_second": max_in_window([c["at"] for c in calls]),
            "cancels": dict(cancels),
            "rate_limited": rate_limited,
            # Every call's arrival counted per calendar second, by key id, and the most in any.
            "per_second": {k: {str(t): n for t, n in v.items()} for k, v in per_second.items()},
            "max_in_calendar_second": {k: max(v.values()) for k, v in per_second.items()},
            "tenant_max_in_calendar_second": max(tenant.values(), default=0),
            "other_app": {
                "calls": len(other),
                "rate_limited": sum(1 for _, ok in other if not ok),
            },
        }
