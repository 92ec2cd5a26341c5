"""The correlation headers each cancel call arrived with (`X-Request-Id`, W3C `traceparent`),
so a test can see what the bridge propagated: `GET /_sandbox/headers`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

# Only these: never the access key headers.
RECORDED = ("X-Request-Id", "traceparent", "tracestate")


class SeenHeaders:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[dict[str, Any]] = []

    def record(self, calendar_id: int, event_id: int, headers: Mapping[str, str]) -> None:
        item: dict[str, Any] = {"calendar_id": calendar_id, "event_id": event_id}
        lowered = {k.lower(): v for k, v in headers.items()}
        item.update({name: lowered.get(name.lower()) for name in RECORDED})
        with self._lock:
            self._seen.append(item)

    def clear(self) -> None:
        with self._lock:
            self._seen = []

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self._seen]
