"""Faults: the ledger goes away mid-burst, and MeetBit misbehaves on the wire. Every fault ends
with senders told to retry (503 with Retry-After, problem+json) or answered from the ledger,
`/readyz` telling the truth, nothing answered 2xx lost, no event canceled twice, and the bridge
carrying on by itself once the fault is gone.

This file is the index of the fault suites. Proven elsewhere, not repeated here:

- a PostgreSQL ledger that stalls (a lock held past the statement timeout; bounds on every
  connection): `test_ledger_stall.py`;
- a ledger without its schema, with an older one, or refusing the bridge's role:
  `test_ledger_refusals.py`;
- the worker outliving a SQLite lock held past the busy timeout and refused PostgreSQL
  connections: `test_worker_outage.py`;
- web workers and the worker process SIGKILLed mid-burst: `test_crash_e2e.py`;
- the MeetBit client's reading of refused and dropped connections, read timeouts, malformed
  200s, 429 with Retry-After in seconds or as a date: `test_meetbit_client.py`; 429 pausing
  every process: `test_dispatch.py`, `test_ratelimit.py`.

Here: SQLite files made unwritable (`chattr +i`: the tests run as root, for whom `chmod` blocks
nothing), a full disk (a size-limited tmpfs), a SQLite write lock held past the busy timeout,
PostgreSQL backends terminated during a burst and connections refused; MeetBit resetting
connections, accepting and never answering, dribbling a body past the read timeout, answering
a malformed 200, and 429 storms with and without Retry-After, each seen through the bridge.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from bridge.sandbox import SandboxServer
from bridge.testing import wsgi_server
from tests.conftest import ZAP_TOKEN, pg_admin_url

TOKEN = {"X-Bridge-Token": ZAP_TOKEN}


def cancel(client: FlaskClient, event_id: int, route: str = "zap") -> Any:
    return client.post(
        f"/hooks/{route}", json={"calendar_id": 5, "event_id": event_id}, headers=TOKEN
    )


def assert_retry_later(resp: Any) -> None:
    """What a sender must be told while the ledger cannot record: retry, and when."""
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "5"
    assert resp.content_type == "application/problem+json"
    assert resp.get_json()["status"] == 503


def cancels_per_event(sandbox: SandboxServer) -> dict[int, int]:
    """How many times MeetBit actually canceled each event (its 200s)."""
    counts: dict[int, int] = {}
    for call in sandbox.calls():
        if call["status"] == 200:
            counts[call["event_id"]] = counts.get(call["event_id"], 0) + 1
    return counts


def assert_recorded(app: Flask, answered: dict[int, str]) -> None:
    """Every delivery answered 2xx is in the ledger, settled, and its event canceled."""
    ledger = app.extensions["bridge"].ledger
    for event_id, delivery_id in answered.items():
        delivery = ledger.deliveries.get(delivery_id)
        assert delivery is not None, (event_id, delivery_id)
        assert delivery.outcome in ("canceled", "already_canceled"), delivery


# --- SQLite -----------------------------------------------------------------------------------


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The files cannot be opened for writing, nor written through open descriptors, even by
    root, until the block ends."""
    try:
        chattr("+i", *paths)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr +i is not available here: {exc}")
    try:
        yield
    finally:
        chattr("-i", *paths)


def test_sqlite_files_made_read_only_are_503_and_writes_resume_when_they_are_writable(
    make_app: Callable[..., Flask], sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The issue's "read-only episode sticks": a connection SQLite opened while the files were
    unwritable stays read-only for good unless it is discarded. A worker (re)started during
    the episode opens exactly such connections; here the pool is emptied as a restart would.

    Only the database and its WAL are made immutable, not the `-shm` index: SQLite maps that
    one into memory, and a write into a mapped immutable file is a SIGBUS that no process can
    catch (the README names this limit)."""
    app = make_app()
    client = app.test_client()
    answered = {1: cancel(client, 1).get_json()["delivery_id"]}
    db = tmp_path / "ledger.db"
    with immutable(db, db.with_name("ledger.db-wal")):
        assert_retry_later(cancel(client, 2))
        app.extensions["bridge"].ledger.db.engine.dispose()  # a restarted worker's empty pool
        for event_id in (2, 3):
            resp = cancel(client, event_id)
            assert_retry_later(resp)
            assert (
                "read-only" in resp.get_json()["detail"] or "written" in resp.get_json()["detail"]
            )
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    # Writable again: the very next webhook is recorded and canceled, no restart needed.
    for event_id in (2, 3):
        resp = cancel(client, event_id)
        assert resp.status_code == 200, resp.get_json()
        answered[event_id] = resp.get_json()["delivery_id"]
    assert client.get("/readyz").status_code == 200
    assert_recorded(app, answered)
    assert cancels_per_event(sandbox) == {1: 1, 2: 1, 3: 1}


def test_readyz_tells_a_ledger_that_reads_but_refuses_writes(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """`/readyz` probes a write: a ledger that still answers every read is not ready when it
    cannot record a delivery, and is ready again as soon as it can."""
    app = make_app()
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    db = tmp_path / "ledger.db"
    with immutable(db, db.with_name("ledger.db-wal")):
        app.extensions["bridge"].ledger.ping()  # the open connection still reads
        resp = client.get("/readyz")
        assert resp.status_code == 503, resp.get_json()
        assert resp.content_type == "application/problem+json"
    assert client.get("/readyz").status_code == 200


@contextmanager
def small_disk(where: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `where` (root with CAP_SYS_ADMIN), unmounted after."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system holding `folder`."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65536, 512):
            with suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def test_a_full_disk_is_503_and_writes_resume_once_space_is_freed(
    make_app: Callable[..., Flask],
    sandbox: SandboxServer,
    tmp_path: Path,
    _sqlite_template: Path,
) -> None:
    with small_disk(tmp_path / "disk", 8) as disk:
        shutil.copyfile(_sqlite_template, disk / "ledger.db")
        app = make_app(DATABASE_URL=f"sqlite:///{disk / 'ledger.db'}")
        client = app.test_client()
        # Warm up: the WAL and its index exist and have room before the disk fills.
        answered = {i: cancel(client, i).get_json()["delivery_id"] for i in range(1, 4)}
        filler = fill(disk)
        refused = 0
        for event_id in range(10, 60):  # a burst; some may still fit in pages already there
            resp = cancel(client, event_id)
            if resp.status_code == 200:
                answered[event_id] = resp.get_json()["delivery_id"]
            else:
                assert_retry_later(resp)
                refused += 1
        assert refused, "the full disk never refused a write"
        assert client.get("/readyz").status_code == 503
        filler.unlink()
        for event_id in range(10, 60):
            if event_id not in answered:
                resp = cancel(client, event_id)
                assert resp.status_code == 200, resp.get_json()
                answered[event_id] = resp.get_json()["delivery_id"]
        assert client.get("/readyz").status_code == 200
        assert_recorded(app, answered)
        app.extensions["bridge"].close()
    assert set(cancels_per_event(sandbox).values()) == {1}


def test_a_sqlite_lock_held_past_the_busy_timeout_is_503_then_the_webhook_goes_through(
    make_app: Callable[..., Flask],
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("bridge.ledger.database.SQLITE_BUSY_TIMEOUT", 0.2)
    app = make_app()
    client = app.test_client()
    holder = sqlite3.connect(str(tmp_path / "ledger.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process keeps the write lock
    try:
        started = time.monotonic()
        assert_retry_later(cancel(client, 1))
        assert time.monotonic() - started < 3
        assert client.get("/readyz").status_code == 503
    finally:
        holder.execute("COMMIT")
        holder.close()
    resp = cancel(client, 1)
    assert resp.status_code == 200
    assert client.get("/readyz").status_code == 200
    assert cancels_per_event(sandbox) == {1: 1}


# --- PostgreSQL -------------------------------------------------------------------------------


def _database(url: str) -> str:
    return sa.make_url(url).database or ""


@contextmanager
def admin_connection() -> Iterator[psycopg.Connection[Any]]:
    admin = pg_admin_url()
    assert admin
    with psycopg.connect(admin, autocommit=True) as conn:
        yield conn


def terminate_backends(conn: psycopg.Connection[Any], database: str) -> int:
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    ).fetchall()
    return len(rows)


def send_until_answered(
    url: str, event_ids: list[int], answers: dict[int, list[int]], delivered: dict[int, str]
) -> None:
    """A sender: posts each event, retrying 503 and 409 as told, until a 2xx. A delivery whose
    process lost the ledger mid-attempt is 409 until its lease expires (`Dispatcher.lease`)."""
    with requests.Session() as session:
        for event_id in event_ids:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                resp = session.post(
                    f"{url}/hooks/zap",
                    json={"calendar_id": 5, "event_id": event_id},
                    headers=TOKEN,
                    timeout=15,
                )
                answers.setdefault(event_id, []).append(resp.status_code)
                if resp.status_code < 300:
                    delivered[event_id] = resp.json()["delivery_id"]
                    break
                assert resp.status_code in (409, 503), resp.text
                assert resp.headers["Content-Type"] == "application/problem+json"
                assert "Retry-After" in resp.headers
                time.sleep(0.1)  # a real sender waits Retry-After; the test need not


@pytest.mark.postgres
def test_postgresql_backends_terminated_mid_burst(
    make_app: Callable[..., Flask], sandbox: SandboxServer, pg_migrated_url: str
) -> None:
    # Short MeetBit timeouts keep the lease of an attempt cut off mid-way short (~12 s).
    app = make_app(DATABASE_URL=pg_migrated_url, MEETBIT_TIMEOUT="1,1")
    answers: dict[int, list[int]] = {}
    delivered: dict[int, str] = {}
    terminated = [0]

    def terminator() -> None:
        """Every backend of the ledger's database killed five times a second for 3 s."""
        with admin_connection() as conn:
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                terminated[0] += terminate_backends(conn, _database(pg_migrated_url))
                time.sleep(0.2)

    events = list(range(1, 61))
    with wsgi_server(app) as url:
        killer = threading.Thread(target=terminator)
        senders = [
            threading.Thread(
                target=send_until_answered, args=(url, events[i::4], answers, delivered)
            )
            for i in range(4)
        ]
        for thread in [killer, *senders]:
            thread.start()
        for thread in [killer, *senders]:
            thread.join()
        assert terminated[0] > 0
        # Recovered by itself: readiness, at once.
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    missing = {e: answers.get(e) for e in events if e not in delivered}
    assert not missing, f"senders never answered 2xx: {missing}"
    assert_recorded(app, delivered)
    counts = cancels_per_event(sandbox)
    assert set(counts) == set(events) and set(counts.values()) == {1}, counts
    statuses = {s for seen in answers.values() for s in seen}
    assert statuses <= {200, 409, 503}, statuses


@pytest.mark.postgres
def test_postgresql_refusing_connections_is_503_until_it_accepts_them_again(
    make_app: Callable[..., Flask], sandbox: SandboxServer, pg_migrated_url: str
) -> None:
    app = make_app(DATABASE_URL=pg_migrated_url)
    client = app.test_client()
    answered = {1: cancel(client, 1).get_json()["delivery_id"]}
    name = _database(pg_migrated_url)
    with admin_connection() as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            terminate_backends(conn, name)
            for event_id in (2, 3):
                assert_retry_later(cancel(client, event_id))
            assert client.get("/readyz").status_code == 503
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    for event_id in (2, 3):
        resp = cancel(client, event_id)
        assert resp.status_code == 200, resp.get_json()
        answered[event_id] = resp.get_json()["delivery_id"]
    assert client.get("/readyz").status_code == 200
    assert_recorded(app, answered)
    assert cancels_per_event(sandbox) == {1: 1, 2: 1, 3: 1}


# --- MeetBit on the wire ------------------------------------------------------------------------


class FaultyMeetBit(http.server.ThreadingHTTPServer):
    """A MeetBit in front of the sandbox that misbehaves on the wire as `mode` says. With
    `forward`, the cancel reaches the sandbox first (MeetBit did cancel; only the answer goes
    wrong), which is what makes a careless retry a second cancel."""

    daemon_threads = True

    def __init__(self, sandbox: SandboxServer) -> None:
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        self.sandbox = sandbox
        self.mode = "pass"
        self.forward = False
        self.retry_after: str | None = None
        self.arrivals: list[float] = []
        self.released = threading.Event()  # ends every hanging or dribbling answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection this server reset on purpose


class _FaultHandler(http.server.BaseHTTPRequestHandler):
    server: FaultyMeetBit
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self, body: bytes) -> requests.Response:
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
        }
        return requests.post(
            self.server.sandbox.url + self.path, data=body, headers=headers, timeout=5
        )

    def do_POST(self) -> None:
        server = self.server
        server.arrivals.append(time.monotonic())
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = server.mode
        if mode == "pass":
            self._answer(self._relay(body))
            return
        if server.forward:
            self._relay(body)
        if mode == "reset":  # RST instead of an answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif mode == "half-open":  # accepted, read, never answered
            server.released.wait(30)
            self.close_connection = True
        elif mode == "slow-body":  # the head at once, then a byte every 0.3 s
            payload = json.dumps({"message": "Event canceled.", "data": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for byte in payload:
                if server.released.wait(0.3):
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            self.close_connection = True
        elif mode == "malformed":
            self._send(200, b"<html><body>Welcome to nginx</body></html>", "text/html")
        elif mode == "429":
            headers = {"Retry-After": server.retry_after} if server.retry_after else {}
            self._send(429, b'{"message": "Too Many Attempts."}', "application/json", headers)

    def _answer(self, resp: requests.Response) -> None:
        self._send(resp.status_code, resp.content, resp.headers.get("Content-Type", ""))

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def faulty(sandbox: SandboxServer) -> Iterator[FaultyMeetBit]:
    server = FaultyMeetBit(sandbox)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("mode", "forward", "reason", "then"),
    [
        ("reset", False, "connection_error", "canceled"),
        ("reset", True, "connection_error", "already_canceled"),
        ("half-open", False, "timeout", "canceled"),
        ("half-open", True, "timeout", "already_canceled"),
        ("slow-body", True, "timeout", "already_canceled"),
        ("malformed", True, "bad_response", "already_canceled"),
    ],
)
def test_meetbit_failing_on_the_wire_is_502_and_the_retry_never_cancels_twice(
    mode: str,
    forward: bool,
    reason: str,
    then: str,
    make_app: Callable[..., Flask],
    faulty: FaultyMeetBit,
    sandbox: SandboxServer,
) -> None:
    """No worker: the sender is told 502 (retry), and its retry settles the delivery; where
    MeetBit had in fact canceled, the retry is `already_canceled` (MeetBit's 404 for a
    delivery marked `sent`), never a second cancel nor a `not_found`."""
    app = make_app(MEETBIT_BASE_URL=faulty.url, MEETBIT_TIMEOUT="1,0.5")
    client = app.test_client()
    faulty.mode, faulty.forward = mode, forward
    started = time.monotonic()
    resp = cancel(client, 41)
    took = time.monotonic() - started
    assert resp.status_code == 502, resp.get_json()
    assert resp.content_type == "application/problem+json"
    assert resp.get_json()["reason"] == reason
    assert took < 5, f"answered after {took:.1f} s"
    faulty.mode = "pass"
    retry = cancel(client, 41)
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["outcome"] == then
    assert cancels_per_event(sandbox) == {41: 1}


@pytest.mark.parametrize("retry_after", ["2", None], ids=["retry-after", "no-retry-after"])
def test_a_429_storm_spaces_every_call_and_ends_in_one_cancel_each(
    retry_after: str | None,
    make_app: Callable[..., Flask],
    faulty: FaultyMeetBit,
    sandbox: SandboxServer,
) -> None:
    """MeetBit answers every call 429: the bridge never hammers it (each 429 pauses every
    caller for its Retry-After, or 1 s without one), each sender is told 502 `rate_limited`
    (no worker here to queue for), and once the storm is over each retry cancels once."""
    app = make_app(MEETBIT_BASE_URL=faulty.url, MEETBIT_TIMEOUT="1,0.5")
    client = app.test_client()
    faulty.mode, faulty.retry_after = "429", retry_after
    for event_id in (51, 52, 53):
        resp = cancel(client, event_id)
        assert resp.status_code == 502 and resp.content_type == "application/problem+json"
        assert resp.get_json()["reason"] == "rate_limited"
    pause = float(retry_after or 1)
    gaps = [b - a for a, b in zip(faulty.arrivals, faulty.arrivals[1:], strict=False)]
    assert len(faulty.arrivals) == 3 and min(gaps) >= pause - 0.05, gaps
    faulty.mode = "pass"
    for event_id in (51, 52, 53):
        resp = cancel(client, event_id)
        assert resp.status_code == 200 and resp.get_json()["outcome"] == "canceled"
    assert cancels_per_event(sandbox) == {51: 1, 52: 1, 53: 1}
