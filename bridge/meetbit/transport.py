"""HTTP transport to one MeetBit tenant: a requests Session per thread, no hidden retries, and
every transport failure mapped once to a typed `MeetBitError`.

The client (`bridge.meetbit.client`) decides what to send and reads the answers; this module
only moves bytes and says whether a failed request may have reached MeetBit (`sent`).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from bridge.meetbit.errors import MeetBitConnectionError, MeetBitLate, MeetBitTimeout

__all__ = ["Transport"]


class Transport:
    """POSTs JSON to one API base with the access key headers, one Session per thread."""

    def __init__(self, base_url: str, api_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url
        self.api_url = api_url
        self._headers = dict(headers)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: set[requests.Session] = set()
        # Bumped by close(): threads notice their Session is stale and build a new one.
        self._generation = 0

    def __repr__(self) -> str:
        # The headers hold the access key: never show them.
        return f"Transport(api_url={self.api_url!r})"

    def post(
        self,
        path: str,
        body: bytes,
        timeout: tuple[float, float],
        *,
        headers: Mapping[str, str] | None = None,
        send_by: float | None = None,
    ) -> requests.Response:
        """Send `body` to `api_url + path` (with `headers` besides the Session's); a transport
        failure raises a typed MeetBitError. Past `send_by` (epoch seconds) nothing is sent:
        `MeetBitLate`."""
        holder = self._session()
        # requests' own way to send a request it did not build per call ("Prepared Requests"):
        # copy the thread's prepared POST and set its path and body. Merging the Session's
        # settings and preparing a request from scratch cost ~0.2 ms a call (a third of
        # requests' own time); the client's paths hold only digits, so they need no quoting.
        request = holder.post.copy()
        request.url = f"{holder.post.url}{path.lstrip('/')}"
        request.body = body
        request.headers["Content-Length"] = str(len(body))
        if headers:
            request.headers.update(headers)
        # The whole answer, head and body, must be in within connect + read timeout: a read
        # timeout alone bounds each wait for a byte, and a body dribbled a byte at a time
        # would hold the web thread for as long as MeetBit (or a broken proxy) likes.
        deadline = time.monotonic() + timeout[0] + timeout[1]
        # The last moment before the bytes leave: a process that stalled after taking its rate
        # slot finds out here, rather than sending in a second that MeetBit counts as full.
        if send_by is not None and time.time() > send_by:
            raise MeetBitLate(f"the rate slot ended {time.time() - send_by:.3f}s before sending")
        try:
            response = holder.session.send(
                request, timeout=timeout, allow_redirects=False, stream=True
            )
            _read_body(response, deadline, timeout[1])
            return response
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

    def _session(self) -> _ThreadSession:
        """The calling thread's Session (requests does not promise Session thread-safety)."""
        holder: _ThreadSession | None = getattr(self._local, "holder", None)
        if holder is not None and holder.generation == self._generation:
            return holder
        session = self._new_session()
        post = session.prepare_request(
            requests.Request(
                "POST", self.api_url + "/", data=b"", headers={"Content-Type": "application/json"}
            )
        )
        with self._lock:
            holder = _ThreadSession(session, post, self._generation)
            self._sessions.add(session)
        # The holder lives only in this thread's slot of the threading.local, so it is freed
        # when the thread ends (or its Session is replaced): close the Session then, rather
        # than leak one pool of sockets per short-lived request thread.
        weakref.finalize(holder, _close_session, self._sessions, self._lock, session)
        self._local.holder = holder
        return holder

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # A POST must never be retried behind our back: a cancel that reached MeetBit and lost
        # its answer is the caller's decision (and the ledger's record), not urllib3's.
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
        session.headers.update(self._headers)
        return session

    def close(self) -> None:
        """Close every thread's Session; a later call opens a fresh one."""
        with self._lock:
            sessions = list(self._sessions)
            self._sessions.clear()
            self._generation += 1
        for session in sessions:
            session.close()


class _ThreadSession:
    """One thread's Session, tagged with the generation it was made in, and the POST request
    prepared once with the Session's headers (see `Transport.post`)."""

    __slots__ = ("__weakref__", "generation", "post", "session")

    def __init__(
        self, session: requests.Session, post: requests.PreparedRequest, generation: int
    ) -> None:
        self.session = session
        self.post = post
        self.generation = generation


def _close_session(
    sessions: set[requests.Session], lock: threading.Lock, session: requests.Session
) -> None:
    with lock:
        sessions.discard(session)
    session.close()


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


def _read_body(response: requests.Response, deadline: float, read_timeout: float) -> None:
    """Read the streamed body into `response` (so `.content` and `.json()` work as usual) by
    single reads, each waiting at most the read timeout, until `deadline`; then hand the
    connection back to the pool for the next call."""
    raw = response.raw
    chunks = []
    try:
        while chunk := raw.read1(65536, decode_content=True):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise requests.ReadTimeout(f"MeetBit's answer took over {read_timeout:g}s")
    except ReadTimeoutError as exc:
        response.close()  # a half-read connection must not go back to the pool
        raise requests.ReadTimeout(str(exc)) from exc
    except Urllib3Error as exc:  # a broken chunk, a body cut short, bad compression
        response.close()
        raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
    except BaseException:
        response.close()
        raise
    # requests keeps a read body here (Response.content reads and stores it the same way).
    response._content = b"".join(chunks)
    raw.release_conn()
