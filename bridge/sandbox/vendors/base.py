"""What every vendor fake shares: the request pipeline (auth, rate window, injected trouble,
strict validation, the write, the answer), the log of what it received, the records it created,
the modes (`Modes`), the write trigger, and serving (on its own port or mounted in the sandbox).

A vendor module only says what is vendor-specific: its endpoints, its credentials check, its
error envelope and the shape of what it stores and answers.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from flask import Blueprint, Flask, Request, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from bridge.sandbox.calls import max_in_window
from bridge.sandbox.faults import Faults
from bridge.sandbox.limiter import SlidingWindow
from bridge.sandbox.webhooks import Notifier

if TYPE_CHECKING:
    from bridge.sandbox.server import LoopbackServer

__all__ = [
    "Endpoint",
    "Knobs",
    "Modes",
    "Received",
    "Refused",
    "Reply",
    "Trigger",
    "VendorFake",
    "basic_credentials",
    "bearer_token",
    "iso_now",
    "same_secret",
]

# How long a stop waits for triggers still running, and the trigger URL's own timeout.
_JOIN_WAIT = 5.0
_TRIGGER_TIMEOUT = 10.0
# Beyond this a body is refused before it is parsed (every vendor has a far lower limit).
MAX_BODY = 1_048_576


def iso_now(moment: float | None = None) -> str:
    """UTC ISO 8601 with milliseconds and a `Z`, as the vendors write their timestamps."""
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty value never matches."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def basic_credentials(req: Request) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, or None."""
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def bearer_token(req: Request) -> str | None:
    scheme, _, value = req.headers.get("Authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class Received:
    """One request as the fake saw it, and what it answered. `accepted` is a 2xx answer;
    `reason` says why a request was refused (or what trouble was injected)."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    status: int | None = None
    accepted: bool = False
    reason: str | None = None
    created_id: str | None = None
    stored: bool = False  # the write was stored, whatever the client was answered

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass
class Reply:
    """A vendor handler's answer; `created` is the record it stored (fires the trigger)."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    created: dict[str, Any] | None = None
    created_id: str | None = None


class Refused(Exception):
    """A request the fake refuses: its answer (in the vendor's shape) and the reason logged."""

    def __init__(self, response: Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    """One API route of a fake: `writes` endpoints create records and take the
    write-then-fail/drop modes; every endpoint takes throttle, slow and fail."""

    rule: str
    method: str
    handler: str  # the fake's method name
    writes: bool = False
    # A limit of this endpoint's own, besides the fake's (HubSpot's search: 5 per second).
    window: tuple[int, float] | None = None


@dataclass
class Knobs:
    """Random trouble, rolled by the sandbox's own dice (`faults.Faults`), read live."""

    latency: float = 0.0
    spike_rate: float = 0.0
    spike_latency: float = 0.0
    failure_rate: float = 0.0
    seed: int | None = None


@dataclass
class _Pending:
    remaining: int | None  # None: until cleared
    value: float


class Modes:
    """Trouble on demand for the next requests. Each call arms one kind for `count` requests
    (`None`: until `clear()`); arming a kind again replaces it.

    - `throttle(count, retry_after)`: 429 in the vendor's shape with `Retry-After`;
    - `fail(count, status)`: a 5xx, nothing written;
    - `slow(seconds, count)`: the request is handled (and a write stored) at once, the answer
      waits `seconds` (to trip a client's read timeout: an uncertain attempt);
    - `write_then_fail(count, status)`: the write is stored, the answer is a 5xx;
    - `write_then_drop(count)`: the write is stored, the connection is closed unanswered.

    throttle, fail and slow apply to every API request (writes and look-ups), in that order;
    the write modes only to writes.
    """

    KINDS = ("throttle", "fail", "slow", "write_then_fail", "write_then_drop")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def _arm(self, kind: str, count: int | None, value: float) -> None:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None: until cleared)")
        with self._lock:
            self._pending[kind] = _Pending(count, value)

    def throttle(self, count: int | None = 1, retry_after: int = 1) -> None:
        self._arm("throttle", count, float(retry_after))

    def fail(self, count: int | None = 1, status: int = 503) -> None:
        if not 500 <= status <= 599:
            raise ValueError("fail takes a 5xx status")
        self._arm("fail", count, float(status))

    def slow(self, seconds: float, count: int | None = 1) -> None:
        self._arm("slow", count, float(seconds))

    def write_then_fail(self, count: int | None = 1, status: int = 502) -> None:
        if not 500 <= status <= 599:
            raise ValueError("write_then_fail takes a 5xx status")
        self._arm("write_then_fail", count, float(status))

    def write_then_drop(self, count: int | None = 1) -> None:
        self._arm("write_then_drop", count, 0.0)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, kind: str) -> float | None:
        """The armed value of `kind` for this request (using one of its count), or None."""
        with self._lock:
            pending = self._pending.get(kind)
            if pending is None:
                return None
            if pending.remaining is not None:
                pending.remaining -= 1
                if pending.remaining <= 0:
                    del self._pending[kind]
            return pending.value

    def public(self) -> dict[str, Any]:
        with self._lock:
            return {
                k: {"remaining": p.remaining, "value": p.value} for k, p in self._pending.items()
            }

    def arm(self, settings: dict[str, Any]) -> None:
        """Arm from JSON (`POST <base_url>/_fake/modes`): `{"throttle": {"count": 2,
        "retry_after": 1}, "slow": {"seconds": 3}, ...}`; `{"clear": true}` first clears."""
        if settings.get("clear"):
            self.clear()
        arms: dict[str, Callable[..., None]] = {
            "throttle": self.throttle,
            "fail": self.fail,
            "slow": self.slow,
            "write_then_fail": self.write_then_fail,
            "write_then_drop": self.write_then_drop,
        }
        for kind, args in settings.items():
            if kind == "clear":
                continue
            if kind not in arms or not isinstance(args, dict):
                raise ValueError(f"unknown mode {kind!r}; modes: {', '.join(self.KINDS)}")
            arms[kind](**args)


@dataclass
class Trigger:
    """Run after every record written: a callable given the record, or a URL the record is
    POSTed to as JSON; stops by itself after `limit` runs (None: never)."""

    target: Callable[[dict[str, Any]], object] | str
    limit: int | None = None
    fired: int = 0


class VendorFake:
    """A loopback fake of one vendor API. Start it on its own port (`start()`, or `with`), or
    get it mounted in the sandbox (`SandboxServer.vendors[name]`); `base_url` is what a
    write-back entry's `base_url` points at either way.

    Read what it got: `requests()` (every request, refused ones with their `reason`),
    `records()` (what it stored, in the vendor's own shape), `wait_for_records(n)`.
    Trouble: `modes` (see `Modes`), `knobs` (random latency/failures), `rate_limit(n, seconds)`.
    `on_write(target, limit=N)` fires after every record written (a loop test's webhook).
    `missing_ids` are record ids that do not exist (the vendor's 404 / invalid association).
    """

    name: ClassVar[str]
    endpoints: ClassVar[tuple[Endpoint, ...]]

    def __init__(self, *, rate_limit: tuple[int, float] | None = None) -> None:
        self._lock = threading.RLock()  # vendor code nests new_id() inside its own locked sections
        self._changed = threading.Condition(self._lock)
        self._log: list[Received] = []
        self._records: list[dict[str, Any]] = []
        self._next_id = 1
        self.modes = Modes()
        self.knobs = Knobs()
        self.faults = Faults(self.knobs)
        self.missing_ids: set[str] = set()
        self.stopping = threading.Event()
        self._initial_rate = rate_limit
        self._window: SlidingWindow | None = None
        self._endpoint_windows: dict[str, SlidingWindow] = {}
        if rate_limit:
            self.rate_limit(*rate_limit)
        self._trigger: Trigger | None = None
        self._notifier = Notifier()
        self._server: LoopbackServer | None = None
        self.base_url: str | None = None

    # -- configuration ------------------------------------------------------------------------

    def rate_limit(self, limit: int | None, window: float = 1.0) -> None:
        """Admit at most `limit` API requests in any `window` seconds (None: no limit)."""
        self._window = SlidingWindow(limit, window) if limit else None

    def endpoint_rate_limit(self, handler: str, limit: int, window: float) -> None:
        """Replace the own limit of the endpoint named `handler` (HubSpot's `search_notes`:
        5 per second) until `reset()`."""
        endpoint = next((e for e in self.endpoints if e.handler == handler), None)
        if endpoint is None or endpoint.window is None:
            raise ValueError(f"{self.name} has no endpoint {handler!r} with a limit of its own")
        self._endpoint_windows[handler] = SlidingWindow(limit, window)

    def on_write(
        self, target: Callable[[dict[str, Any]], object] | str | None, *, limit: int | None = None
    ) -> None:
        """After every record written, call `target(record)` or POST the record (JSON) to the
        URL `target`, in a background thread, at most `limit` times; None removes it."""
        with self._lock:
            self._trigger = Trigger(target, limit) if target is not None else None

    @property
    def triggered(self) -> int:
        """How often the write trigger has fired."""
        with self._lock:
            return self._trigger.fired if self._trigger else 0

    def reset(self) -> None:
        """Forget requests, records, modes, trigger, missing ids and rate history; back to the
        constructor's rate limit and no random trouble."""
        self.join_triggers()
        with self._lock:
            self._log = []
            self._records = []
            self._next_id = 1
            self._trigger = None
        self.modes.clear()
        self.missing_ids.clear()
        self.knobs = Knobs()
        self.faults = Faults(self.knobs)
        self._endpoint_windows.clear()
        self.rate_limit(*self._initial_rate) if self._initial_rate else self.rate_limit(None)
        self.forget()

    def forget(self) -> None:
        """Vendor state beyond the records (tokens, tags); overridden where there is some."""

    def configure(self, settings: dict[str, Any]) -> None:
        """Change settings from JSON (`POST <base_url>/_fake/config`), for a fake in another
        process: `missing_ids` (a list, replaces), `rate_limit` (`[limit, seconds]` or null),
        `knobs` (`{"latency": 0.5, "failure_rate": 0.1, ...}`), and what `configure_extra`
        of the vendor takes. Raises ValueError naming a bad one; nothing is changed then."""
        changes: list[Callable[[], None]] = []
        for key, value in settings.items():
            if key == "missing_ids":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("missing_ids: a list of id strings")
                changes.append(functools.partial(self._set_missing, set(value)))
            elif key == "rate_limit":
                if value is not None and not (
                    isinstance(value, list)
                    and len(value) == 2
                    and isinstance(value[0], int)
                    and value[0] >= 1
                    and isinstance(value[1], int | float)
                    and value[1] > 0
                ):
                    raise ValueError("rate_limit: [limit >= 1, seconds > 0] or null")
                limit, window = value if value is not None else (None, 1.0)
                changes.append(functools.partial(self.rate_limit, limit, float(window)))
            elif key == "knobs":
                if not isinstance(value, dict) or not set(value) <= set(asdict(Knobs())):
                    raise ValueError(f"knobs: an object with {', '.join(asdict(Knobs()))}")
                for name, number in value.items():
                    if name != "seed" and not (isinstance(number, int | float) and number >= 0):
                        raise ValueError(f"knobs.{name}: a number >= 0")
                changes.append(functools.partial(self._set_knobs, dict(value)))
            else:
                change = self.configure_extra(key, value)
                if change is None:
                    raise ValueError(f"unknown setting {key!r}")
                changes.append(change)
        for change in changes:
            change()

    def _set_missing(self, ids: set[str]) -> None:
        self.missing_ids = ids

    def _set_knobs(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            setattr(self.knobs, name, value)

    def configure_extra(self, key: str, value: Any) -> Callable[[], None] | None:
        """A vendor's own setting: the change to make (after checking `value`, raising
        ValueError), or None if `key` is not one of its settings."""
        return None

    def credentials_hint(self) -> str:
        """The sandbox credentials, for the startup banner."""
        return ""

    # -- what it got --------------------------------------------------------------------------

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._log)

    def accepted(self) -> list[Received]:
        return [r for r in self.requests() if r.accepted]

    def refused(self) -> list[Received]:
        return [r for r in self.requests() if r.status is not None and not r.accepted]

    def records(self) -> list[dict[str, Any]]:
        """What it stored, oldest first, in the vendor's own shape (copies)."""
        with self._lock:
            return [json.loads(json.dumps(r)) for r in self._records]

    def wait_for_records(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait (bounded) until at least `count` records are stored; returns them all."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._records) >= count, timeout)
        return self.records()

    def max_in_window(self, window: float) -> int:
        """Most accepted API requests in any `window` seconds."""
        return max_in_window([r.at for r in self.accepted()], window)

    # -- serving ------------------------------------------------------------------------------

    def standalone_app(self) -> Flask:
        """A Flask app serving only this fake, at the root."""
        app = Flask(f"bridge.sandbox.vendors.{self.name}")
        app.register_blueprint(self.blueprint(""))

        @app.errorhandler(NotFound)
        def not_found(exc: NotFound) -> Response:
            return self._unrouted(404, "not_found")

        @app.errorhandler(MethodNotAllowed)
        def not_allowed(exc: MethodNotAllowed) -> Response:
            return self._unrouted(405, "method_not_allowed")

        return app

    def start(self, host: str = "127.0.0.1", port: int = 0) -> VendorFake:
        """Serve it on its own loopback port (ephemeral by default); sets `base_url`."""
        from bridge.sandbox.server import LoopbackServer  # server imports app imports us

        if self._server is None:
            self.stopping.clear()
            self._server = LoopbackServer(self.standalone_app(), host=host, port=port).start()
            self.base_url = self._server.url
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self.stopping.set()
            server.stop()
            self.join_triggers()

    def __enter__(self) -> VendorFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def mounted_at(self, origin: str) -> None:
        """Called by the sandbox server: this fake answers under `origin/<name>`."""
        self.base_url = f"{origin}/{self.name}"

    def join_triggers(self, timeout: float = _JOIN_WAIT) -> None:
        self._notifier.join(timeout)

    def blueprint(self, url_prefix: str) -> Blueprint:
        """The fake's routes (and `/_fake/` introspection) as a blueprint under `url_prefix`."""
        bp = Blueprint(f"vendor_{self.name}", __name__, url_prefix=url_prefix or None)
        for endpoint in self.endpoints:
            # The root of a mounted fake is its prefix itself (`/webhook`, no redirect).
            rule = "" if endpoint.rule == "/" and url_prefix else endpoint.rule
            bp.add_url_rule(
                rule,
                endpoint=endpoint.handler,
                view_func=self._view(endpoint),
                methods=[endpoint.method],
                strict_slashes=True,
            )
        bp.add_url_rule("/_fake/requests", "fake_requests", self._introspect_requests)
        bp.add_url_rule("/_fake/records", "fake_records", self._introspect_records)
        bp.add_url_rule("/_fake/reset", "fake_reset", self._introspect_reset, methods=["POST"])
        bp.add_url_rule("/_fake/modes", "fake_modes", self._introspect_modes, methods=["POST"])
        bp.add_url_rule(
            "/_fake/trigger", "fake_trigger", self._introspect_trigger, methods=["POST"]
        )
        bp.add_url_rule("/_fake/config", "fake_config", self._introspect_config, methods=["POST"])
        return bp

    def unrouted(self, path: str, status: int) -> Response:
        """The vendor's 404/405 for a path under its prefix that no endpoint has (the sandbox
        app calls this for paths under `/<name>`)."""
        return self._unrouted(status, "not_found" if status == 404 else "method_not_allowed")

    def _unrouted(self, status: int, reason: str) -> Response:
        received = self._arrive(request)
        response = self.error(status, reason, "Not found" if status == 404 else "Not allowed")
        self._answered(received, response.status_code, reason)
        return response

    # -- the pipeline -------------------------------------------------------------------------

    def _view(self, endpoint: Endpoint) -> Callable[..., Response]:
        handler = getattr(self, endpoint.handler)

        def view(**params: Any) -> Response:
            return self._handle(endpoint, handler, params)

        view.__name__ = f"{self.name}_{endpoint.handler}"
        return view

    def _handle(
        self, endpoint: Endpoint, handler: Callable[..., Reply], params: dict[str, Any]
    ) -> Response:
        received = self._arrive(request)
        try:
            if len(received.body) > MAX_BODY:
                raise Refused(self.error(413, "too_large", "Request entity too large"), "too_large")
            self.authenticate(request)
            window = self._admit(endpoint, received.at)
            retry_after = self.modes.take("throttle")
            if retry_after is not None:
                raise Refused(self.throttled(int(retry_after), "injected"), "throttled")
            status = self.modes.take("fail")
            if status is not None:
                raise Refused(self.server_error(int(status)), f"failing_{int(status)}")
            if self.faults.fails():
                raise Refused(self.server_error(500), "failing_random")
            reply = handler(request, received, **params)
        except Refused as refused:
            self._answered(received, refused.response.status_code, refused.reason)
            return refused.response
        response = self.respond(reply)
        if window is not None:
            response.headers.update(self.rate_headers(*window))
        received.created_id = reply.created_id
        received.stored = reply.created is not None
        if reply.created is not None:
            self._fire(reply.created)
        delay = (self.modes.take("slow") or 0.0) + self.faults.delay()
        if delay > 0:
            self.stopping.wait(delay)
        if endpoint.writes and reply.created is not None:
            status = self.modes.take("write_then_fail")
            if status is not None:
                self._answered(received, int(status), f"stored_then_{int(status)}")
                return self.server_error(int(status))
            if self.modes.take("write_then_drop") is not None:
                self._answered(received, None, "stored_then_dropped")
                _drop_connection(request)
                return self.server_error(502)  # only seen if the socket could not be dropped
        self._answered(received, response.status_code, None)
        return response

    def _admit(self, endpoint: Endpoint, now: float) -> tuple[int, float, int] | None:
        """Count the request in its window; (limit, window, remaining) of the fake's own."""
        window = self._window
        if endpoint.window is not None:
            own = self._endpoint_windows.get(endpoint.handler)
            if own is None:
                own = self._endpoint_windows.setdefault(
                    endpoint.handler, SlidingWindow(*endpoint.window)
                )
            admitted, _, wait = own.admit(now)
            if not admitted:
                raise Refused(self.throttled(_ceil(wait), "endpoint"), "rate_limited")
            return None  # an endpoint with a limit of its own is not counted in the fake's
        if window is None:
            return None
        admitted, remaining, wait = window.admit(now)
        if not admitted:
            raise Refused(self.throttled(_ceil(wait), "window"), "rate_limited")
        return window.limit, window.window, remaining

    def _arrive(self, req: Request) -> Received:
        raw = req.get_data(cache=True)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        received = Received(
            at=time.time(),
            method=req.method,
            path=req.path,
            query=dict(req.args.items()),
            headers=dict(req.headers.items()),
            body=raw,
            json=parsed,
        )
        with self._changed:
            self._log.append(received)
            self._changed.notify_all()
        return received

    def _answered(self, received: Received, status: int | None, reason: str | None) -> None:
        with self._changed:
            received.status = status
            received.accepted = status is not None and 200 <= status < 300
            received.reason = reason
            self._changed.notify_all()

    def store(self, record: dict[str, Any]) -> None:
        """Keep a created record (vendor shape); wakes `wait_for_records`."""
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def stored(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Stored records (the live objects, for the vendor's own look-ups) matching."""
        with self._lock:
            return [r for r in self._records if predicate(r)]

    def new_id(self) -> int:
        with self._lock:
            value = self._next_id
            self._next_id += 1
            return value

    def _fire(self, record: dict[str, Any]) -> None:
        with self._lock:
            trigger = self._trigger
            if trigger is None or (trigger.limit is not None and trigger.fired >= trigger.limit):
                return
            trigger.fired += 1
        target = trigger.target
        copy = json.loads(json.dumps(record))
        if isinstance(target, str):

            def post() -> None:
                with requests.Session() as session:
                    session.post(
                        target,
                        json={"vendor": self.name, "record": copy},
                        timeout=_TRIGGER_TIMEOUT,
                        allow_redirects=False,
                    ).close()

            self._notifier.run_later(post, f"{self.name}-trigger")
        else:
            self._notifier.run_later(lambda: target(copy), f"{self.name}-trigger")

    # -- what a vendor module provides --------------------------------------------------------

    def authenticate(self, req: Request) -> None:
        """Raise Refused (401/403 in the vendor's shape) unless the credentials are right."""
        raise NotImplementedError

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        """An error answer in the vendor's envelope."""
        raise NotImplementedError

    def throttled(self, retry_after: int, why: str) -> Response:
        """The vendor's 429 (why: `window`, `endpoint` or `injected`)."""
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def rate_headers(self, limit: int, window: float, remaining: int) -> dict[str, str]:
        """Headers describing the fake's rate window on a success (none by default)."""
        return {}

    def server_error(self, status: int) -> Response:
        return self.error(status, "server_error", "Internal server error")

    def respond(self, reply: Reply) -> Response:
        return json_answer(reply.status, reply.body, reply.headers)

    def refuse(self, status: int, code: str, message: str, reason: str, **extra: Any) -> Refused:
        """A Refused carrying the vendor's error; `raise self.refuse(...)`."""
        return Refused(self.error(status, code, message, **extra), reason)

    # -- shared strict checks -----------------------------------------------------------------

    def json_body(self, req: Request, received: Received) -> Any:
        """The body as JSON, refusing another content type (415) or bad JSON (400)."""
        if req.mimetype != "application/json":
            raise self.refuse(
                415, "unsupported_media_type",
                f"Content-Type {req.content_type or '(none)'} is not supported, "
                "send application/json", "content_type",
            )  # fmt: skip
        try:
            return json.loads(received.body)
        except ValueError as exc:
            raise self.refuse(400, "invalid_json", f"Invalid JSON: {exc}", "invalid_json") from exc

    # -- introspection views ------------------------------------------------------------------

    def _introspect_requests(self) -> Response:
        return json_answer(200, [r.public() for r in self.requests()])

    def _introspect_records(self) -> Response:
        return json_answer(200, self.records())

    def _introspect_reset(self) -> Response:
        self.reset()
        return json_answer(200, {"reset": True})

    def _introspect_modes(self) -> Response:
        try:
            settings = json.loads(request.get_data() or b"{}")
            if not isinstance(settings, dict):
                raise ValueError("send a JSON object")
            self.modes.arm(settings)
        except (ValueError, TypeError) as exc:
            return json_answer(400, {"error": str(exc)})
        return json_answer(200, self.modes.public())

    def _introspect_config(self) -> Response:
        try:
            settings = json.loads(request.get_data() or b"{}")
            if not isinstance(settings, dict):
                raise ValueError("send a JSON object")
            self.configure(settings)
        except ValueError as exc:
            return json_answer(400, {"error": str(exc)})
        return json_answer(200, {"configured": sorted(settings)})

    def _introspect_trigger(self) -> Response:
        try:
            settings = json.loads(request.get_data() or b"{}")
            url, limit = settings.get("url"), settings.get("limit")
            if url is not None and not (isinstance(url, str) and url.startswith("http")):
                raise ValueError("url: an http(s) URL, or null to remove the trigger")
            if limit is not None and not (isinstance(limit, int) and limit >= 1):
                raise ValueError("limit: a positive integer or null")
        except (ValueError, AttributeError) as exc:
            return json_answer(400, {"error": str(exc)})
        self.on_write(url, limit=limit)
        return json_answer(200, {"url": url, "limit": limit})


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


def correlation_id() -> str:
    return str(uuid.uuid4())


def _ceil(seconds: float) -> int:
    whole = int(seconds)
    return max(1, whole + (1 if seconds > whole else 0))


def _drop_connection(req: Request) -> None:
    """Close the client's connection without an answer (werkzeug's and gunicorn's servers
    expose the socket in the environ), so it cannot tell whether the write happened."""
    sock = req.environ.get("werkzeug.socket") or req.environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
