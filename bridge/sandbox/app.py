"""The MeetBit simulator: Cancel Event exactly as documented, plus `/_sandbox/` introspection.

A Flask app of its own, with every piece of state behind one lock so tests can hammer it
from many threads. https://meetbit.mintlify.app/api-reference/events/cancel-event
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, request
from marshmallow import RAISE, Schema, ValidationError, validate
from marshmallow import fields as mf
from werkzeug.exceptions import NotFound

from bridge.sandbox.webhooks import meetbit_timestamp, send_meetbit_webhook

__all__ = ["EXTENSION", "SandboxConfig", "SandboxState", "create_sandbox_app", "generate_event"]

log = logging.getLogger(__name__)

EXTENSION = "meetbit_sandbox"
API_PREFIX = "/api/public/v2.0"
NOTE_MAX = 255
# The newer rendering of the Cancel Event page shows this polymorphic class name.
CANCELED_BY_TYPE = "App\\Models\\Tenant\\User"
CANCELED_BY_ID = 1
FIRST_SCHEDULED_EVENT_ID = 700_000
NOTIFY_TIMEOUT = 10.0

INVALID_KEY = "Invalid or missing access key."
ACCESS_DENIED = "Access Denied."
NOT_FOUND = "Resource object does not exist."
TOO_MANY = "Too many requests."


@dataclass
class SandboxConfig:
    """Every knob of the sandbox; change them at runtime with `PATCH /_sandbox/config`."""

    key_id: str = "MBP-sandbox"
    key_secret: str = "sandbox-secret"
    # A key whose Role lacks events.delete.*: answered 401 `Access Denied.`
    denied_key_id: str = "MBP-denied"
    denied_key_secret: str = "denied-secret"
    rate_limit: float = 5.0  # requests per second per key id; 0 = unlimited
    retry_after: int = 1  # real MeetBit says 60; small here so tests finish
    latency: float = 0.0  # seconds added to every cancel
    spike_rate: float = 0.0  # fraction of cancels that get spike_latency on top
    spike_latency: float = 0.0
    failure_rate: float = 0.0  # fraction of cancels answered 500 before doing anything
    seed: int | None = None  # seeds the failure/spike dice, for reproducible runs
    missing_from: int = 900_000  # event ids at or above this do not exist (404)
    notify_url: str | None = None  # where to send signed MeetBit webhooks, if anywhere
    notify_secret: str | None = None


class _ConfigSchema(Schema):
    """Validates a (partial) SandboxConfig from `PATCH /_sandbox/config`."""

    class Meta:
        unknown = RAISE

    key_id = mf.String(validate=validate.Length(min=1))
    key_secret = mf.String(validate=validate.Length(min=1))
    denied_key_id = mf.String(validate=validate.Length(min=1))
    denied_key_secret = mf.String(validate=validate.Length(min=1))
    rate_limit = mf.Float(validate=validate.Range(min=0))
    retry_after = mf.Integer(validate=validate.Range(min=0))
    latency = mf.Float(validate=validate.Range(min=0))
    spike_rate = mf.Float(validate=validate.Range(min=0, max=1))
    spike_latency = mf.Float(validate=validate.Range(min=0))
    failure_rate = mf.Float(validate=validate.Range(min=0, max=1))
    seed = mf.Integer(allow_none=True)
    missing_from = mf.Integer(validate=validate.Range(min=1))
    notify_url = mf.Url(allow_none=True, require_tld=False)
    notify_secret = mf.String(allow_none=True)


class _ScheduleSchema(Schema):
    class Meta:
        unknown = RAISE

    email = mf.Email(required=True)
    name = mf.String(allow_none=True, load_default=None)
    calendar_id = mf.Integer(load_default=1, validate=validate.Range(min=1))
    event_id = mf.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


# -- deterministic events ---------------------------------------------------------------------

_TITLES = [
    "Discovery call", "Product demo", "Onboarding session", "Quarterly review",
    "Renewal check-in", "Support follow-up", "Implementation kickoff", "Contract walkthrough",
]  # fmt: skip
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Perlman"]
_EPOCH = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return meetbit_timestamp(moment)


def generate_event(calendar_id: int, event_id: int) -> dict[str, Any]:
    """The (uncanceled) Event that the sandbox holds for these ids; same ids, same event."""
    rng = random.Random(f"meetbit-sandbox/{calendar_id}/{event_id}")
    title = rng.choice(_TITLES)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    customer_id = rng.randint(1000, 9999)
    start = _EPOCH + timedelta(days=rng.randint(0, 364), minutes=30 * rng.randint(0, 16))
    end = start + timedelta(minutes=rng.choice([30, 45, 60]))
    created = start - timedelta(days=rng.randint(1, 30), minutes=rng.randint(0, 600))
    public_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    room_public_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    provider_event_id = f"{rng.getrandbits(104):026x}"
    room_id = rng.randint(1, 99_999)
    room_account_id = rng.randint(1, 500)
    meeting_link_id = rng.randint(1, 500)
    return {
        "id": event_id,
        "calendar_id": calendar_id,
        "title": f"{title} with {first} {last}",
        "body": f"{title} booked by {first} {last}.",
        "start": _iso(start),
        "end": _iso(end),
        "attendees": [
            {
                "email": f"calendar{calendar_id}@sandbox.meetbit.test",
                "name": f"Calendar {calendar_id} Owner",
                "is_organizer": True,
                "customer_id": None,
                "calendar_id": calendar_id,
                "status": 1,
            },
            {
                "email": f"{first}.{last}@example.com".lower(),
                "name": f"{first} {last}",
                "is_organizer": False,
                "customer_id": customer_id,
                "calendar_id": None,
                "status": 0,
            },
        ],
        "location": "MeetBit Room",
        "cancel_note": None,
        "canceled_by_id": None,
        "canceled_by_type": None,
        "created_at": _iso(created),
        "updated_at": _iso(created),
        "deleted_at": None,
        "public_id": public_id,
        "provider_event_id": provider_event_id,
        "customer_id": customer_id,
        "meeting_link_id": meeting_link_id,
        "online_conference": {
            "id": room_id,
            "online_conference_account_id": room_account_id,
            "public_id": room_public_id,
            "title": title,
            "is_public": False,
            "deleted_at": None,
            "created_at": _iso(created),
            "updated_at": _iso(created),
            "backer_event_id": event_id,
            "is_occurred": False,
            "started_at": None,
            "ended_at": None,
        },
    }


def _note_errors(payload: Any) -> list[str]:
    """MeetBit's (Laravel's) `required|string|max:255` rule on `cancel_note`."""
    note = payload.get("cancel_note") if isinstance(payload, dict) else None
    if isinstance(note, str):
        # Laravel trims strings and turns empty ones into null before validating.
        note = note.strip() or None
    if note is None:
        return ["The cancel note field is required."]
    if not isinstance(note, str):
        return ["The cancel note field must be a string."]
    if len(note) > NOTE_MAX:
        return [f"The cancel note field must not be greater than {NOTE_MAX} characters."]
    return []


def _validation_message(errors: dict[str, list[str]]) -> str:
    """Laravel's summary: the first error, plus `(and N more error[s])`."""
    messages = [m for ms in errors.values() for m in ms]
    more = len(messages) - 1
    if more <= 0:
        return messages[0]
    return f"{messages[0]} (and {more} more error{'s' if more > 1 else ''})"


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most arrivals inside any `window` seconds (sliding over the arrival times)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- state ------------------------------------------------------------------------------------


class SandboxState:
    """Everything the sandbox remembers, guarded by one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        # Set when the server stops: latency sleeps end at once so shutdown is quick.
        self.stopping = threading.Event()
        self._notifiers: set[threading.Thread] = set()
        self.calls: list[dict[str, Any]] = []
        self.reset()

    def reset(self) -> None:
        """Forget calls, cancels, scheduled events and rate-limit state; keep the config."""
        with self.lock:
            self.calls = []
            self.rate_limited = 0
            self.arrivals: dict[str, deque[float]] = {}
            self.locked_until: dict[str, float] = {}
            self.canceled: dict[tuple[int, int], dict[str, Any]] = {}
            self.scheduled: dict[tuple[int, int], dict[str, Any]] = {}
            self.next_event_id = FIRST_SCHEDULED_EVENT_ID
            self.rng = random.Random(self.config.seed)

    # rate limiting (call with the lock held)

    def _window(self) -> tuple[int, float]:
        """(requests allowed, window seconds) for the configured rate."""
        rate = self.config.rate_limit
        if rate >= 1:
            return math.floor(rate), 1.0
        return 1, 1.0 / rate

    def _admit(self, key: str, now: float) -> tuple[bool, dict[str, str]]:
        if self.config.rate_limit <= 0:
            return True, {}
        allowed, window = self._window()
        arrivals = self.arrivals.setdefault(key, deque())
        while arrivals and arrivals[0] <= now - window:
            arrivals.popleft()
        locked_until = self.locked_until.get(key, 0.0)
        if locked_until > now or len(arrivals) >= allowed:
            # Retrying during a lock-out makes it longer, as MeetBit warns.
            until = now + self.config.retry_after
            self.locked_until[key] = until
            return False, {
                "RateLimit-Limit": str(allowed),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(max(1, math.ceil(until - now))),
                "Retry-After": str(self.config.retry_after),
            }
        arrivals.append(now)
        return True, {
            "RateLimit-Limit": str(allowed),
            "RateLimit-Remaining": str(max(0, allowed - len(arrivals))),
            "RateLimit-Reset": str(max(1, math.ceil(arrivals[0] + window - now))),
        }

    # events (call with the lock held)

    def _live_event(self, calendar_id: int, event_id: int) -> dict[str, Any] | None:
        key = (calendar_id, event_id)
        if key in self.canceled:
            return None
        if key in self.scheduled:
            return self.scheduled[key]
        if event_id < self.config.missing_from:
            return generate_event(calendar_id, event_id)
        return None

    def _cancel(self, calendar_id: int, event_id: int, note: str) -> dict[str, Any] | None:
        event = self._live_event(calendar_id, event_id)
        if event is None:
            return None
        now = meetbit_timestamp()
        event = copy.deepcopy(event)  # scheduled events stay as booked
        event.update(
            cancel_note=note,
            canceled_by_id=CANCELED_BY_ID,
            canceled_by_type=CANCELED_BY_TYPE,
            updated_at=now,
            deleted_at=now,
        )
        self.canceled[(calendar_id, event_id)] = event
        return event

    # the cancel endpoint

    def handle_cancel(self, calendar_id: int, event_id: int) -> Response:
        arrival = time.time()
        key_id = request.headers.get("X-Access-Key-Id", "")
        key_secret = request.headers.get("X-Access-Key-Secret", "")
        raw = request.get_data(cache=False)
        call: dict[str, Any] = {
            "at": arrival,
            "calendar_id": calendar_id,
            "event_id": event_id,
            "status": None,
            "key_id": key_id,
        }
        with self.lock:
            self.calls.append(call)
            # Every request counts, invalid ones too (MeetBit's rate-limiting page).
            admitted, limit_headers = self._admit(key_id, arrival)
            if not admitted:
                self.rate_limited += 1
                call["status"] = 429
                return _text(429, TOO_MANY, limit_headers)
            config = self.config
            delay = config.latency
            if config.spike_rate and self.rng.random() < config.spike_rate:
                delay += config.spike_latency
        if delay > 0:
            self.stopping.wait(delay)
        response = self._answer(calendar_id, event_id, key_id, key_secret, raw)
        for name, value in limit_headers.items():
            response.headers[name] = value
        with self.lock:
            call["status"] = response.status_code
        return response

    def _answer(
        self, calendar_id: int, event_id: int, key_id: str, key_secret: str, raw: bytes
    ) -> Response:
        config = self.config
        if _matches(key_id, key_secret, config.denied_key_id, config.denied_key_secret):
            return _text(401, ACCESS_DENIED)
        if not _matches(key_id, key_secret, config.key_id, config.key_secret):
            return _text(401, INVALID_KEY)
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            payload = None  # a non-JSON body carries no cancel_note
        with self.lock:
            if config.failure_rate and self.rng.random() < config.failure_rate:
                # MeetBit's 500 body is undocumented; Laravel's JSON default is used here.
                return _json(500, {"message": "Server Error"})
            # Route-model binding (404) runs before request validation (400) in Laravel.
            # An event already canceled is soft-deleted; MeetBit's answer to a second cancel
            # is undocumented, and the sandbox answers 404 as for any missing event.
            if self._live_event(calendar_id, event_id) is None:
                return _text(404, NOT_FOUND)
            problems = _note_errors(payload)
            if problems:
                errors = {"cancel_note": problems}
                return _json(400, {"message": _validation_message(errors), "errors": errors})
            note = str(payload["cancel_note"]).strip()
            event = self._cancel(calendar_id, event_id, note)
        if event is None:  # pragma: no cover - checked under the same lock above
            return _text(404, NOT_FOUND)
        self._notify("events.deleted", {"id": event_id, "calendar_id": calendar_id})
        return _json(200, {"message": "Event canceled.", "data": event})

    # webhooks

    def _notify(self, event: str, data: dict[str, Any]) -> None:
        """Send a signed webhook in the background, as MeetBit does after the fact."""
        url, secret = self.config.notify_url, self.config.notify_secret
        if not url:
            return
        thread = threading.Thread(
            target=self._send_quietly, args=(url, secret or "", event, data), daemon=True,
            name=f"sandbox-notify-{event}",
        )  # fmt: skip
        with self.lock:
            self._notifiers.add(thread)
        thread.start()

    def _send_quietly(self, url: str, secret: str, event: str, data: dict[str, Any]) -> None:
        try:
            status = send_meetbit_webhook(url, secret, event, data, timeout=NOTIFY_TIMEOUT)
            log.info("sandbox sent %s to %s: %s", event, url, status)
        except Exception as exc:  # a background sender must never die loudly
            log.warning("sandbox could not send %s to %s: %s", event, url, type(exc).__name__)
        finally:
            with self.lock:
                self._notifiers.discard(threading.current_thread())

    def join_notifiers(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for background webhooks still being sent."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                pending = list(self._notifiers)
            if not pending:
                return
            for thread in pending:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    # introspection

    def snapshot_calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(call) for call in self.calls]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            calls = [dict(call) for call in self.calls]
            rate_limited = self.rate_limited
        by_status = Counter("pending" if c["status"] is None else str(c["status"]) for c in calls)
        cancels = Counter(
            f"{c['calendar_id']}/{c['event_id']}" for c in calls if c["status"] == 200
        )
        return {
            "calls": len(calls),
            "by_status": dict(sorted(by_status.items())),
            "max_calls_in_any_second": _max_in_window([c["at"] for c in calls]),
            "cancels": dict(cancels),
            "rate_limited": rate_limited,
        }

    def public_config(self) -> dict[str, Any]:
        data = asdict(self.config)
        for name in ("key_secret", "denied_key_secret", "notify_secret"):
            if data[name] is not None:
                data[name] = "***"
        return data

    def update_config(self, changes: dict[str, Any]) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(self.config, name, value)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
            if "rate_limit" in changes or "retry_after" in changes:
                self.arrivals.clear()
                self.locked_until.clear()

    def schedule(
        self, email: str, name: str | None, calendar_id: int, event_id: int | None
    ) -> dict[str, Any]:
        with self.lock:
            if event_id is None:
                while (calendar_id, self.next_event_id) in self.scheduled:
                    self.next_event_id += 1
                event_id = self.next_event_id
                self.next_event_id += 1
            event = generate_event(calendar_id, event_id)
            customer = event["attendees"][1]
            customer.update(email=email, name=name or email.split("@", 1)[0])
            self.scheduled[(calendar_id, event_id)] = event
            self.canceled.pop((calendar_id, event_id), None)
            meeting_link_id = event["meeting_link_id"]
            url, secret = self.config.notify_url, self.config.notify_secret
        answer: dict[str, Any] = {
            "calendar_id": calendar_id,
            "event_id": event_id,
            "meeting_link_id": meeting_link_id,
            "email": email,
            "notified": None,
            "event": event,
        }
        if url:
            data: dict[str, Any] = {
                "id": meeting_link_id,
                "event_id": event_id,
                "calendar_id": calendar_id,
                "email": email,
            }
            if name:
                data["name"] = name
            # Sent before answering, so a caller knows the bridge has the link when it returns.
            try:
                answer["notified"] = send_meetbit_webhook(
                    url, secret or "", "meeting_links.scheduled", data, timeout=NOTIFY_TIMEOUT
                )
            except Exception as exc:
                answer["notify_error"] = type(exc).__name__
        return answer


def _matches(key_id: str, key_secret: str, want_id: str, want_secret: str) -> bool:
    id_ok = hmac.compare_digest(key_id.encode(), want_id.encode())
    secret_ok = hmac.compare_digest(key_secret.encode(), want_secret.encode())
    return bool(key_id and key_secret and id_ok and secret_ok)


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, headers=headers, mimetype="text/plain")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def _bad_request(exc: ValidationError) -> Response:
    errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return _json(400, {"message": "Invalid sandbox request.", "errors": errors})


def _json_body() -> Any:
    try:
        return json.loads(request.get_data() or b"{}")
    except ValueError:
        return None


# -- app --------------------------------------------------------------------------------------


def create_sandbox_app(config: SandboxConfig | None = None) -> Flask:
    """The sandbox Flask app. The config object is used as is, so changing it changes the app."""
    config = config if config is not None else SandboxConfig()
    try:
        _ConfigSchema().load({f.name: getattr(config, f.name) for f in fields(config)})
    except ValidationError as exc:
        raise ValueError(f"invalid sandbox config: {exc.messages}") from exc
    app = Flask("bridge.sandbox")
    state = SandboxState(config)
    app.extensions[EXTENSION] = state

    @app.post(f"{API_PREFIX}/calendars/<int:calendar_id>/events/<int:event_id>/cancel")
    def cancel_event(calendar_id: int, event_id: int) -> Response:
        return state.handle_cancel(calendar_id, event_id)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response | NotFound:
        if request.path.startswith(API_PREFIX):
            return _text(404, NOT_FOUND)
        return exc

    @app.get("/_sandbox/calls")
    def calls() -> Response:
        return _json(200, state.snapshot_calls())

    @app.get("/_sandbox/stats")
    def stats() -> Response:
        return _json(200, state.stats())

    @app.post("/_sandbox/reset")
    def reset() -> Response:
        state.reset()
        return _json(200, {"reset": True})

    @app.get("/_sandbox/config")
    def get_config() -> Response:
        return _json(200, state.public_config())

    @app.patch("/_sandbox/config")
    def patch_config() -> Response:
        body = _json_body()
        if not isinstance(body, dict):
            return _json(400, {"message": "Send a JSON object.", "errors": {}})
        try:
            changes = _ConfigSchema().load(body, partial=True)
        except ValidationError as exc:
            return _bad_request(exc)
        state.update_config(changes)
        return _json(200, state.public_config())

    @app.post("/_sandbox/schedule")
    def schedule() -> Response:
        body = _json_body()
        if not isinstance(body, dict):
            return _json(400, {"message": "Send a JSON object.", "errors": {}})
        try:
            args = _ScheduleSchema().load(body)
        except ValidationError as exc:
            return _bad_request(exc)
        answer = state.schedule(args["email"], args["name"], args["calendar_id"], args["event_id"])
        return _json(201, answer)

    return app
