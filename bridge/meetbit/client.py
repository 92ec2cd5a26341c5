"""The one MeetBit API client: a Session per thread, explicit timeouts, no hidden retries.

Every transport failure and every documented answer becomes one typed `MeetBitError`; the
access key never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from bridge.meetbit.errors import (
    MeetBitAuthError,
    MeetBitBadResponse,
    MeetBitConnectionError,
    MeetBitError,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitServerError,
    MeetBitTimeout,
    MeetBitValidationError,
)
from bridge.meetbit.schemas import EventEnvelopeSchema, plainly_valid

__all__ = [
    "API_PREFIX",
    "CanceledEvent",
    "MeetBitClient",
    "RateLimitInfo",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

API_PREFIX = "/api/public/v2.0"
ACCESS_DENIED = "Access Denied."
DEFAULT_RETRY_AFTER = 1.0
# urllib3 would accept hours here; nobody should sleep that long on one header.
MAX_RETRY_AFTER = 3600.0
_SNIPPET = 200
_DELTA_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")
_ENVELOPE = EventEnvelopeSchema()
_PLAINLY_VALID_ENVELOPE = plainly_valid(_ENVELOPE)


@cache
def _default_user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"meetbit-bridge/{version('meetbit-bridge')}"
    except PackageNotFoundError:
        return "meetbit-bridge"


@dataclass(frozen=True)
class RateLimitInfo:
    """MeetBit's `RateLimit-*` headers from one response (None where absent or unparseable)."""

    limit: int | None
    remaining: int | None
    reset: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitInfo | None:
        limit = _int_header(headers.get("RateLimit-Limit"))
        remaining = _int_header(headers.get("RateLimit-Remaining"))
        reset = _float_header(headers.get("RateLimit-Reset"))
        if limit is None and remaining is None and reset is None:
            return None
        return cls(limit=limit, remaining=remaining, reset=reset)


@dataclass(frozen=True)
class CanceledEvent:
    """A successful cancel: `event` is MeetBit's `data` object exactly as returned."""

    event: dict[str, Any]
    message: str
    rate_limit: RateLimitInfo | None


def _int_header(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _float_header(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date (RFC 9110).

    Missing or invalid gives 1 s; the result is capped at one hour and never negative.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    match = _DELTA_SECONDS.match(value)
    if match:
        seconds = float(match.group(1))
    else:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class MeetBitClient:
    """Calls MeetBit's Public API v2.0 for one tenant with one access key."""

    def __init__(
        self,
        base_url: str,
        key_id: str,
        key_secret: str,
        *,
        timeout: tuple[float, float] = (3.05, 10.0),
        user_agent: str | None = None,
    ) -> None:
        origin = base_url.strip().rstrip("/")
        # A pasted API base (".../api/public/v2.0") means the same tenant origin.
        if origin.endswith(API_PREFIX):
            origin = origin[: -len(API_PREFIX)]
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "MeetBit base URL must be an http(s) origin, e.g. https://acme.example.com"
            )
        if not key_id or not key_secret:
            raise ValueError("MeetBit access key id and secret are both required")
        connect, read = timeout
        if connect <= 0 or read <= 0:
            raise ValueError("MeetBit timeouts must be positive")
        self.base_url = origin
        self.api_url = origin + API_PREFIX
        self.timeout = (float(connect), float(read))
        self.user_agent = user_agent or _default_user_agent()
        self._key_id = key_id
        self._key_secret = key_secret
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: set[requests.Session] = set()
        # Bumped by close(): threads notice their Session is stale and build a new one.
        self._generation = 0

    def __repr__(self) -> str:
        return f"MeetBitClient(base_url={self.base_url!r}, key_id='***', key_secret='***')"

    # -- sessions -----------------------------------------------------------------------------

    def _session(self) -> _ThreadSession:
        """The calling thread's Session (requests does not promise Session thread-safety)."""
        holder: _ThreadSession | None = getattr(self._local, "holder", None)
        if holder is not None and holder.generation == self._generation:
            return holder
        session = requests.Session()
        # POST /cancel must never be retried behind our back: a cancel that reached MeetBit
        # and lost its answer is the caller's decision (and ledger's record), not urllib3's.
        # read=False also keeps a read timeout a ReadTimeout (not a wrapped MaxRetryError).
        no_retries = Retry(
            total=0, connect=0, read=False, redirect=False, status=0, other=0,
            raise_on_status=False,
        )  # fmt: skip
        adapter = HTTPAdapter(max_retries=no_retries)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # Proxy and CA settings are read from the environment once per Session instead of on
        # every call (requests re-parses them each time otherwise); ~/.netrc is never used.
        session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
        session.trust_env = False
        session.headers.update(
            {
                "User-Agent": self.user_agent,
                "Accept": "application/json",
                "X-Access-Key-Id": self._key_id,
                "X-Access-Key-Secret": self._key_secret,
            }
        )
        cancel = session.prepare_request(
            requests.Request(
                "POST", self.api_url + "/", data=b"", headers={"Content-Type": "application/json"}
            )
        )
        with self._lock:
            holder = _ThreadSession(session, cancel, self._generation)
            self._sessions.add(session)
        # The holder lives only in this thread's slot of the threading.local, so it is freed
        # when the thread ends (or its Session is replaced): close the Session then, rather
        # than leak one pool of sockets per short-lived request thread.
        weakref.finalize(holder, _close_session, self._sessions, self._lock, session)
        self._local.holder = holder
        return holder

    def close(self) -> None:
        """Close every thread's Session; a later call opens a fresh one."""
        with self._lock:
            sessions = list(self._sessions)
            self._sessions.clear()
            self._generation += 1
        for session in sessions:
            session.close()

    def __enter__(self) -> MeetBitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- API ------------------------------------------------------------------------------------

    def cancel_event(
        self,
        calendar_id: int,
        event_id: int,
        cancel_note: str,
        *,
        read_timeout: float | None = None,
    ) -> CanceledEvent:
        """Cancel one event; raises a `MeetBitError` subclass for anything but a 2xx Event.

        `read_timeout` lets a caller with a deadline shorten (never lengthen) the read timeout.
        """
        path = f"/calendars/{int(calendar_id)}/events/{int(event_id)}/cancel"
        connect, read = self.timeout
        if read_timeout is not None:
            if read_timeout <= 0:
                raise MeetBitTimeout("deadline passed before calling MeetBit", sent=False)
            read = min(read, read_timeout)
        body = json.dumps({"cancel_note": cancel_note}, ensure_ascii=False).encode("utf-8")
        started = time.monotonic()
        response = self._post(path, body, (connect, read))
        elapsed = time.monotonic() - started
        log.debug(
            "MeetBit POST %s -> %s in %.3fs", path, response.status_code, elapsed,
            extra={"meetbit_status": response.status_code, "meetbit_path": path},
        )  # fmt: skip
        return self._canceled_event(response)

    def _post(self, path: str, body: bytes, timeout: tuple[float, float]) -> requests.Response:
        """Send the request, mapping every transport exception once to a typed error."""
        holder = self._session()
        # requests' own way to send a request it did not build per call ("Prepared Requests"):
        # copy the thread's prepared cancel and set its path and body. Merging the Session's
        # settings and preparing a request from scratch cost ~0.2 ms a call (a third of
        # requests' own time); the path holds only digits, so it needs no quoting.
        request = holder.cancel.copy()
        request.url = f"{holder.cancel.url}{path.lstrip('/')}"
        request.body = body
        request.headers["Content-Length"] = str(len(body))
        try:
            return holder.session.send(request, timeout=timeout, allow_redirects=False)
        except requests.ConnectTimeout as exc:
            raise MeetBitTimeout(
                f"connecting to MeetBit timed out after {timeout[0]:g}s", sent=False
            ) from exc
        except requests.ReadTimeout as exc:
            raise MeetBitTimeout(
                f"MeetBit did not answer within {timeout[1]:g}s", sent=True
            ) from exc
        except requests.ConnectionError as exc:
            raise MeetBitConnectionError(
                f"cannot reach MeetBit at {self.base_url}: {_cause(exc)}",
                sent=_connection_broke_after_send(exc),
            ) from exc
        except requests.RequestException as exc:
            # Anything else (chunked encoding, decoding, ...) happened while the answer came
            # back, so the request may well have been acted on.
            raise MeetBitConnectionError(
                f"MeetBit exchange failed: {type(exc).__name__}", sent=True
            ) from exc

    # -- answers ------------------------------------------------------------------------------

    def _canceled_event(self, response: requests.Response) -> CanceledEvent:
        status = response.status_code
        if 200 <= status < 300:
            return self._parse_success(response)
        raise self._error_for(response)

    def _parse_success(self, response: requests.Response) -> CanceledEvent:
        status = response.status_code
        if not _is_json(response):
            raise MeetBitBadResponse(
                f"MeetBit answered {status} with {_content_type(response) or 'no content type'}, "
                "not the JSON Event envelope",
                status=status,
            )
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise MeetBitBadResponse(
                f"MeetBit answered {status} with a body that is not JSON", status=status
            ) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise MeetBitBadResponse(
                f"MeetBit answered {status} without an Event in `data`", status=status
            )
        try:
            if not _PLAINLY_VALID_ENVELOPE(payload):
                _ENVELOPE.load(payload)
        except ValidationError as exc:
            raise MeetBitBadResponse(
                f"MeetBit answered {status} with an Event that does not match its schema: "
                f"{_flatten_messages(exc.messages)}",
                status=status,
            ) from exc
        return CanceledEvent(
            event=payload["data"],
            message=str(payload["message"]),
            rate_limit=RateLimitInfo.from_headers(response.headers),
        )

    def _error_for(self, response: requests.Response) -> MeetBitError:
        """Status first, Content-Type second (MeetBit mixes JSON and text/plain error bodies)."""
        status = response.status_code
        # Decoded as UTF-8 on purpose: requests would guess a charset, slowly, from large bodies.
        text = self._scrub(response.content.decode("utf-8", errors="replace").strip())
        if status == 400:
            message, errors = self._validation_body(response, text)
            return MeetBitValidationError(
                f"MeetBit rejected the request: {message}", errors=errors, status=status
            )
        if status == 401:
            if text == ACCESS_DENIED:
                return MeetBitPermissionError(
                    "MeetBit denied access: the access key's role lacks events.delete.*",
                    status=status,
                    sent=True,
                )
            return MeetBitAuthError(
                "MeetBit rejected the access key id or secret", status=status, sent=True
            )
        if status == 404:
            return MeetBitNotFound(
                "MeetBit says the event does not exist (or is already canceled)",
                status=status,
                sent=True,
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return MeetBitRateLimited(
                f"MeetBit rate limit reached; retry after {retry_after:g}s",
                retry_after=retry_after,
                status=status,
            )
        what = "failed" if status >= 500 else "gave an unexpected answer"
        snippet = f": {text[:_SNIPPET]}" if text else ""
        return MeetBitServerError(f"MeetBit {what} ({status}){snippet}", status=status, sent=True)

    def _validation_body(
        self, response: requests.Response, text: str
    ) -> tuple[str, dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        message = text[:_SNIPPET] or "invalid request"
        if _is_json(response):
            try:
                payload = json.loads(response.content)
            except ValueError:
                return message, errors
            if isinstance(payload, dict):
                if isinstance(payload.get("message"), str):
                    message = self._scrub(payload["message"])[:_SNIPPET]
                raw = payload.get("errors")
                if isinstance(raw, dict):
                    for field, messages in raw.items():
                        items = messages if isinstance(messages, list) else [messages]
                        errors[str(field)] = [self._scrub(str(m)) for m in items]
        return message, errors

    def _scrub(self, text: str) -> str:
        # MeetBit has no reason to echo the key, but a proxy's error page might.
        for secret in (self._key_secret, self._key_id):
            if secret and secret in text:
                text = text.replace(secret, "***")
        return text


class _ThreadSession:
    """One thread's Session, tagged with the client generation it was made in, and the cancel
    request prepared once with the Session's headers (see `MeetBitClient._post`)."""

    __slots__ = ("__weakref__", "cancel", "generation", "session")

    def __init__(
        self, session: requests.Session, cancel: requests.PreparedRequest, generation: int
    ) -> None:
        self.session = session
        self.cancel = cancel
        self.generation = generation


def _close_session(
    sessions: set[requests.Session], lock: threading.Lock, session: requests.Session
) -> None:
    with lock:
        sessions.discard(session)
    session.close()


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _is_json(response: requests.Response) -> bool:
    ctype = _content_type(response)
    return ctype == "application/json" or ctype.endswith("+json")


def _cause(exc: BaseException) -> str:
    """A short, key-free description of a transport failure."""
    inner: BaseException | None = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    if isinstance(inner, BaseException):
        return type(inner).__name__
    return type(exc).__name__


def _connection_broke_after_send(exc: requests.ConnectionError) -> bool:
    """True when urllib3 says the connection broke while the answer was awaited.

    A failure to open the connection (refused, DNS, unreachable) arrives wrapped in
    MaxRetryError(NewConnectionError); a reset or close after the request went out arrives as
    a bare ProtocolError ("Connection aborted."), so the cancel may have reached MeetBit.
    TLS and proxy failures also come wrapped in MaxRetryError, before anything was sent.
    """
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError):
        # With connect=0 and read=False only connection-phase failures exhaust the Retry.
        return False
    # ProtocolError and anything unrecognised: assume MeetBit may have seen the request.
    return True


def _flatten_messages(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        parts = [_flatten_messages(v, f"{prefix}{k}.") for k, v in messages.items()]
        return "; ".join(p for p in parts if p)
    if isinstance(messages, list):
        return f"{prefix.rstrip('.')}: " + " ".join(str(m) for m in messages)
    return f"{prefix.rstrip('.')}: {messages}"
