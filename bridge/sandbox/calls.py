"""What the sandbox was asked: one record per cancel call, and the figures drawn from them
(`/_sandbox/calls`, `/_sandbox/stats`)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["CallLog", "max_in_window"]


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most arrivals inside any `window` seconds (sliding over the arrival times)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class CallLog:
    """Every cancel call in arrival order; a call's status is None until it is answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._rate_limited = 0

    def clear(self) -> None:
        with self._lock:
            self._calls = []
            self._rate_limited = 0

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
        by_status = Counter("pending" if c["status"] is None else str(c["status"]) for c in calls)
        cancels = Counter(
            f"{c['calendar_id']}/{c['event_id']}" for c in calls if c["status"] == 200
        )
        return {
            "calls": len(calls),
            "by_status": dict(sorted(by_status.items())),
            "max_calls_in_any_second": max_in_window([c["at"] for c in calls]),
            "cancels": dict(cancels),
            "rate_limited": rate_limited,
        }
