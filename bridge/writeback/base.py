"""The sink interface (one write-back job in, the id of what the vendor created out) and the one
HTTP path every sink shares: a `requests.Session` per thread, a timeout on every call, the
vendor's answer mapped once onto `SinkError` kinds the worker acts on.

Nothing here knows a vendor's name; each vendor's module overrides `write` and `find`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

# What a text may hold at most, marker included: well inside every vendor's field (HubSpot's
# note body 65,536, Salesforce's Task Description 32,000 characters).
TEXT_MAX = 4000
# The longest a vendor's Retry-After is taken at its word: a pause is shared by every job to
# that host, so an absurd value would stall them all.
RETRY_AFTER_MAX = 3600.0


class ErrorKind:
    AUTH = "auth"  # 401/403: our credential or its scopes; the vendor did nothing
    RATE_LIMITED = "rate_limited"  # 429: the vendor did nothing; every job to the host waits
    REJECTED = "rejected"  # 400/404/422...: the request will not improve by sending it again
    TRANSIENT = "transient"  # 5xx, timeout, dropped connection: it may have been written


class SinkError(Exception):
    """A failed call to a vendor, as the worker needs it."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        uncertain: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        # The write may have reached the vendor and taken effect: look for the marker first.
        self.uncertain = uncertain
        self.retry_after = retry_after


@dataclass(frozen=True)
class Job:
    """One write-back to make: the rendered record and text (ending in the marker), and the
    outcome as data for sinks that send it whole (the signed webhook)."""

    id: str
    record: str
    text: str
    marker: str
    outcome: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SinkConfig:
    """A route entry's settings, checked at startup: origin, record type, resolved secrets."""

    base_url: str
    object: str | None = None
    url: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: tuple[float, float] = (3.05, 10.0)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(RETRY_AFTER_MAX, seconds))


def _no_pace() -> None:
    return None


def _detail(response: requests.Response) -> str:
    text = response.text[:200].replace("\n", " ").strip()
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


class Sink:
    """One kind of write-back target (a vendor's note, comment or task; a signed webhook)."""

    name: ClassVar[str]
    # The vendor's one origin, when there is one; else `base_url` is required.
    default_base_url: ClassVar[str | None] = None
    # Keys of the route entry naming environment variables, all required (`*_env`).
    credentials: ClassVar[tuple[str, ...]] = ()
    # Credential sets of which exactly one is required (Zendesk: email+token or bearer).
    credential_choices: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # Allowed values of `object` (the record's type), first one the default; () = no `object`.
    objects: ClassVar[tuple[str, ...]] = ()
    needs_record: ClassVar[bool] = True
    needs_url: ClassVar[bool] = False
    # The vendor's documented request budget: (requests, per seconds).
    default_rate: ClassVar[tuple[int, float]] = (10, 1.0)

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self._local = threading.local()
        # Called before every request: the worker sets it to wait for the host's rate slot.
        self.pace: Callable[[], None] = _no_pace

    @property
    def host(self) -> str:
        """The rate limit's key: every job to this origin shares one budget."""
        return urlsplit(self.target_url()).netloc.lower()

    def target_url(self) -> str:
        return self.config.url or self.config.base_url

    # -- what each sink implements ------------------------------------------------------------

    def write(self, job: Job) -> str:
        """Create the note (comment, task, webhook call); the vendor's id of it."""
        raise NotImplementedError

    def find(self, job: Job) -> str | None:
        """The id of what an earlier, uncertain attempt created (its text holds the marker),
        or None when nothing on the record holds it."""
        raise NotImplementedError

    # -- the one HTTP path --------------------------------------------------------------------

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # A proxy or netrc from the environment must not see vendor credentials.
            session.trust_env = False
            self._local.session = session
        return session

    def headers(self) -> dict[str, str]:
        """The auth headers of every call (overridden per vendor)."""
        return {}

    def renew_auth(self) -> bool:
        """After a 401: True if a fresh credential was obtained and the call may go once more
        (an OAuth token that expired); static credentials cannot be renewed."""
        return False

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
        authorized: bool = True,
    ) -> requests.Response:
        """One call (two after a renewable 401); a 2xx answer returned, anything else raised
        as `SinkError`. `authorized=False` leaves the vendor's auth headers off."""
        target = url or self.config.base_url.rstrip("/") + path
        for renewed in (False, True):
            sent_headers = {"Accept": "application/json"}
            if authorized:
                sent_headers.update(self.headers())
            sent_headers.update(headers or {})
            try:
                return self._send(method, target, sent_headers, json, params, data or content)
            except SinkError as exc:
                if exc.status == 401 and authorized and not renewed and self.renew_auth():
                    continue
                raise
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: Any,
        params: Mapping[str, str] | None,
        data: Mapping[str, str] | bytes | None,
    ) -> requests.Response:
        self.pace()
        try:
            response = self.session().request(
                method,
                url,
                json=json,
                params=params,
                data=data,
                headers=headers,
                timeout=self.config.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise SinkError(ErrorKind.TRANSIENT, "connect timeout") from exc
        except requests.exceptions.ConnectionError as exc:
            # Refused before a byte was sent, or dropped after: requests cannot always tell,
            # so only a refused connection counts as certain.
            refused = "Connection refused" in str(exc) or "NewConnectionError" in str(exc)
            raise SinkError(
                ErrorKind.TRANSIENT,
                f"connection failed: {type(exc).__name__}",
                uncertain=not refused,
            ) from exc
        except requests.exceptions.RequestException as exc:
            # Read timeout, broken chunked answer: the write may have happened.
            raise SinkError(
                ErrorKind.TRANSIENT, f"no complete answer: {type(exc).__name__}", uncertain=True
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        special = self.refusal(response)
        if special is not None:
            raise special
        if status in (401, 403):
            raise SinkError(ErrorKind.AUTH, _detail(response), status=status)
        if status == 429:
            raise SinkError(
                ErrorKind.RATE_LIMITED,
                _detail(response),
                status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise SinkError(ErrorKind.TRANSIENT, _detail(response), status=status, uncertain=True)
        if status in (408, 409, 423, 425):
            raise SinkError(ErrorKind.TRANSIENT, _detail(response), status=status)
        raise SinkError(ErrorKind.REJECTED, _detail(response), status=status)

    def refusal(self, response: requests.Response) -> SinkError | None:
        """A vendor's own meaning of an error answer, before the shared mapping (overridden
        where a vendor deviates, e.g. a throttle that is not a 429)."""
        return None

    @staticmethod
    def json_of(response: requests.Response) -> Any:
        """The answer's JSON; a 2xx that is not JSON is an answer we cannot trust."""
        try:
            return response.json()
        except ValueError as exc:
            raise SinkError(
                ErrorKind.TRANSIENT,
                f"HTTP {response.status_code} answer is not JSON",
                status=response.status_code,
                uncertain=True,
            ) from exc

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def created_id(value: Any) -> str:
    """A vendor's id (a number or a string) as text; an answer without one is not trusted."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise SinkError(ErrorKind.TRANSIENT, "the answer holds no id", uncertain=True)
    return str(value)
