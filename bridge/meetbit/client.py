"""The one MeetBit API client: what to send to Cancel Event and what its answers mean.

Every documented answer becomes a `CanceledEvent` or one typed `MeetBitError` (the transport's
failures are mapped in `bridge.meetbit.transport`, which keeps a Session per thread and never
retries); `(connect, read)` timeouts on every call. The access key never appears in a message,
a repr or a log line.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests

from bridge.logs import REQUEST_ID_HEADER
from bridge.meetbit.errors import (
    MeetBitAuthError,
    MeetBitBadResponse,
    MeetBitError,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitServerError,
    MeetBitTimeout,
    MeetBitValidationError,
)
from bridge.meetbit.ratelimit import RateLimitInfo, read_retry_after
from bridge.meetbit.schemas import canceled_event
from bridge.meetbit.transport import Transport

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
_SNIPPET = 200
# The key probe (`probe_key`): a cancel that cannot cancel anything. Id 0 exists in no
# auto-increment table, so MeetBit answers 404 once it has accepted the key and its
# permission; and the body has no `cancel_note`, the one required field, so even an event 0
# would be a 400, not a cancel.
PROBE_PATH = "/calendars/0/events/0/cancel"
PROBE_BODY = b"{}"


@cache
def _default_user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"meetbit-bridge/{version('meetbit-bridge')}"
    except PackageNotFoundError:
        return "meetbit-bridge"


@dataclass(frozen=True)
class CanceledEvent:
    """A successful cancel: `event` is MeetBit's `data` object exactly as returned."""

    event: dict[str, Any]
    message: str
    rate_limit: RateLimitInfo


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date (RFC 9110).

    Missing or invalid gives 1 s; the result is capped at one hour and never negative.
    """
    seconds = read_retry_after(value, now=now)
    return DEFAULT_RETRY_AFTER if seconds is None else seconds


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
        self.transport = Transport(
            origin,
            self.api_url,
            {
                "User-Agent": self.user_agent,
                "Accept": "application/json",
                "X-Access-Key-Id": key_id,
                "X-Access-Key-Secret": key_secret,
            },
        )

    def __repr__(self) -> str:
        return f"MeetBitClient(base_url={self.base_url!r}, key_id='***', key_secret='***')"

    def close(self) -> None:
        """Close every thread's Session; a later call opens a fresh one."""
        self.transport.close()

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
        request_id: str | None = None,
        send_by: float | None = None,
    ) -> CanceledEvent:
        """Cancel one event; raises a `MeetBitError` subclass for anything but a 2xx Event.
        Every answer's rate-limit headers come with it (`rate_limit`, on errors too).

        `read_timeout` lets a caller with a deadline shorten (never lengthen) the read timeout;
        `request_id` is sent as `X-Request-Id` (the webhook's), so MeetBit's support can find
        the call in their logs from ours.
        `send_by` (epoch seconds): if the request cannot leave by then, nothing is sent and
        `MeetBitLate` is raised (the caller's rate slot has passed).
        """
        calendar_id, event_id = int(calendar_id), int(event_id)
        path = f"/calendars/{calendar_id}/events/{event_id}/cancel"
        connect, read = self.timeout
        if read_timeout is not None:
            if read_timeout <= 0:
                raise MeetBitTimeout("deadline passed before calling MeetBit", sent=False)
            read = min(read, read_timeout)
        body = json.dumps({"cancel_note": cancel_note}, ensure_ascii=False).encode("utf-8")
        started = time.monotonic()
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        response = self.transport.post(
            path, body, (connect, read), headers=headers, send_by=send_by
        )
        elapsed = time.monotonic() - started
        log.debug(
            "MeetBit POST %s -> %s in %.3fs", path, response.status_code, elapsed,
            extra={"meetbit_status": response.status_code, "meetbit_path": path},
        )  # fmt: skip
        rate_limit = RateLimitInfo.from_headers(response.headers)
        try:
            if 200 <= response.status_code < 300:
                return self._parse_success(response, calendar_id, event_id, rate_limit)
            raise self._error_for(response, rate_limit)
        except MeetBitError as error:
            error.rate_limit = rate_limit
            raise

    def probe_key(self) -> int:
        """Check the access key and its `events.delete.*` permission with a request that can
        never cancel anything (`PROBE_PATH`, without a note); returns MeetBit's status when it
        accepted them (404, or 400). A rejected key or role raises `MeetBitAuthError` /
        `MeetBitPermissionError`; a 429, a timeout or anything else its typed error."""
        response = self.transport.post(PROBE_PATH, PROBE_BODY, self.timeout)
        status = response.status_code
        if status in (400, 404):
            return status
        if 200 <= status < 300:
            raise MeetBitBadResponse(
                f"MeetBit answered {status} to a cancel of event 0 in calendar 0, which cannot "
                "exist, sent without a note; nothing can have been canceled, but report it",
                status=status,
            )
        raise self._error_for(response, RateLimitInfo.from_headers(response.headers))

    # -- answers ------------------------------------------------------------------------------

    def _parse_success(
        self,
        response: requests.Response,
        calendar_id: int,
        event_id: int,
        rate_limit: RateLimitInfo,
    ) -> CanceledEvent:
        """A 2xx as the canceled event; anything but the Event asked for is a bad answer."""
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
        try:
            message, event = canceled_event(payload, calendar_id=calendar_id, event_id=event_id)
        except ValueError as exc:
            raise MeetBitBadResponse(
                f"MeetBit answered {status} with {self._scrub(str(exc))[:_SNIPPET]}",
                status=status,
            ) from exc
        return CanceledEvent(event=event, message=message, rate_limit=rate_limit)

    def _error_for(self, response: requests.Response, rate_limit: RateLimitInfo) -> MeetBitError:
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
            # Retry-After first; without a readable one, the window's reset, else a second.
            retry_after = rate_limit.retry_after
            if retry_after is None:
                retry_after = rate_limit.reset or DEFAULT_RETRY_AFTER
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


def _content_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _is_json(response: requests.Response) -> bool:
    ctype = _content_type(response)
    return ctype == "application/json" or ctype.endswith("+json")
