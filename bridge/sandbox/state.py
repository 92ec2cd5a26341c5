"""One sandbox's state: its config and the parts that remember (calls, rate limiter, dice,
events, webhooks in flight), the cancel endpoint that ties them together, and `reset`.

Each part guards itself with a lock of its own, so tests can hammer the sandbox from many
threads; `reset` first lets cancels in progress finish, so nothing of a test leaks into the next.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from typing import Any

from flask import Response

from bridge.sandbox.answers import (
    ACCESS_DENIED,
    INVALID_KEY,
    NOT_FOUND,
    TOO_MANY,
    json_response,
    keys_match,
    note_errors,
    text_response,
    validation_message,
)
from bridge.sandbox.calls import CallLog
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.events import EventStore
from bridge.sandbox.faults import Faults
from bridge.sandbox.headers import SeenHeaders
from bridge.sandbox.limiter import RateLimiter
from bridge.sandbox.other_app import OtherApp
from bridge.sandbox.webhooks import NOTIFY_TIMEOUT, Notifier, send_meetbit_webhook

__all__ = ["SandboxState"]

# Bounds how long a reset or a stop waits for cancels and webhooks still in progress.
DRAIN_WAIT = 5.0


class SandboxState:
    """Everything one sandbox remembers. The config object is used as is and stays live."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._initial = replace(config)  # what `reset(restore_config=True)` goes back to
        # Set when the server stops (or a reset drains): latency sleeps end at once.
        self.stopping = threading.Event()
        self.log = CallLog()
        self.seen_headers = SeenHeaders()
        self.limiter = RateLimiter(config)
        self.faults = Faults(config)
        self.events = EventStore(config)
        self.notifier = Notifier()
        self.other_app = OtherApp(config, self.limiter, self.log)
        self._in_flight = 0
        self._idle = threading.Condition()

    # -- reset ---------------------------------------------------------------------------------

    def reset(self, *, restore_config: bool = False) -> None:
        """Forget calls, cancels, bookings, rate-limit state and reseed the dice; with
        `restore_config`, also put every knob back to what the sandbox was created with."""
        self.drain()
        if restore_config:
            self.config.copy_from(self._initial)
        self.log.clear()
        self.seen_headers.clear()
        self.limiter.clear()
        self.events.clear()
        self.faults.reseed()

    def drain(self, timeout: float = DRAIN_WAIT) -> None:
        """Cut latency sleeps short and wait (bounded) for cancels and webhooks in progress."""
        was_stopping = self.stopping.is_set()
        self.stopping.set()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)
        self.notifier.join(timeout)
        if not was_stopping:
            self.stopping.clear()

    # -- the cancel endpoint -------------------------------------------------------------------

    def handle_cancel(
        self, calendar_id: int, event_id: int, key_id: str, key_secret: str, raw: bytes
    ) -> Response:
        """`POST .../calendars/{calendar_id}/events/{event_id}/cancel`, as MeetBit answers it."""
        with self._idle:
            self._in_flight += 1
        try:
            arrival = time.time()
            call = self.log.arrived(arrival, calendar_id, event_id, key_id)
            # Every request counts, invalid ones too (MeetBit's rate-limiting page).
            admitted, limit_headers = self.limiter.admit(key_id, arrival)
            if not admitted:
                self.log.answered(call, 429)
                return text_response(429, TOO_MANY, limit_headers)
            delay = self.faults.delay()
            if delay > 0:
                self.stopping.wait(delay)
            response = self._answer(calendar_id, event_id, key_id, key_secret, raw)
            response.headers.update(limit_headers)
            self.log.answered(call, response.status_code)
            return response
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _answer(
        self, calendar_id: int, event_id: int, key_id: str, key_secret: str, raw: bytes
    ) -> Response:
        config = self.config
        if keys_match(key_id, key_secret, config.denied_key_id, config.denied_key_secret):
            return text_response(401, ACCESS_DENIED)
        if not keys_match(key_id, key_secret, config.key_id, config.key_secret):
            return text_response(401, INVALID_KEY)
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = None  # a non-JSON body carries no cancel_note
        if self.faults.fails():
            # MeetBit's 500 body is undocumented; Laravel's JSON default is used here.
            return json_response(500, {"message": "Server Error"})
        # Route-model binding (404) runs before request validation (400) in Laravel. An event
        # already canceled is soft-deleted; MeetBit's answer to a second cancel is
        # undocumented, and the sandbox answers 404 as for any missing event.
        if not self.events.exists(calendar_id, event_id):
            return text_response(404, NOT_FOUND)
        problems = note_errors(payload)
        if problems:
            errors = {"cancel_note": problems}
            return json_response(400, {"message": validation_message(errors), "errors": errors})
        event = self.events.cancel(calendar_id, event_id, str(payload["cancel_note"]).strip())
        if event is None:  # canceled by a concurrent call since the check above
            return text_response(404, NOT_FOUND)
        self._notify("events.deleted", {"id": event_id, "calendar_id": calendar_id})
        return json_response(200, {"message": "Event canceled.", "data": event})

    # -- webhooks ------------------------------------------------------------------------------

    def _notify(self, event: str, data: dict[str, Any]) -> None:
        """Send a signed webhook in the background, as MeetBit does after the fact."""
        url, secret = self.config.notify_url, self.config.notify_secret
        if url:
            self.notifier.send_later(url, secret or "", event, data)

    def join_notifiers(self, timeout: float = DRAIN_WAIT) -> None:
        """Wait (bounded) for background webhooks still being sent."""
        self.notifier.join(timeout)

    def schedule(
        self, email: str, name: str | None, calendar_id: int, event_id: int | None
    ) -> dict[str, Any]:
        """Book an event and, when a receiver is configured, send `meeting_links.scheduled`
        before answering, so a caller knows the bridge has the link when this returns."""
        event = self.events.book(email, name, calendar_id, event_id)
        event_id = int(event["id"])
        url, secret = self.config.notify_url, self.config.notify_secret
        answer: dict[str, Any] = {
            "calendar_id": calendar_id,
            "event_id": event_id,
            "meeting_link_id": event["meeting_link_id"],
            "email": email,
            "notified": None,
            "event": event,
        }
        if url:
            data: dict[str, Any] = {
                "id": event["meeting_link_id"],
                "event_id": event_id,
                "calendar_id": calendar_id,
                "email": email,
            }
            if name:
                data["name"] = name
            try:
                answer["notified"] = send_meetbit_webhook(
                    url, secret or "", "meeting_links.scheduled", data, timeout=NOTIFY_TIMEOUT
                )
            except Exception as exc:
                answer["notify_error"] = type(exc).__name__
        return answer

    # -- introspection and config --------------------------------------------------------------

    @property
    def canceled(self) -> dict[tuple[int, int], dict[str, Any]]:
        """Canceled events by (calendar id, event id)."""
        return self.events.canceled

    def snapshot_calls(self) -> list[dict[str, Any]]:
        return self.log.snapshot()

    def stats(self) -> dict[str, Any]:
        return self.log.stats()

    def public_config(self) -> dict[str, Any]:
        return self.config.public()

    def update_config(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self.config, name, value)
        if "seed" in changes:
            self.faults.reseed()
        if "rate_limit" in changes or "retry_after" in changes:
            self.limiter.clear()
