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

import shutil
import sqlite3
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
        app.extensions["bridge"].ledger.db.engine.dispose()
        app.extensions["bridge"].ledger.ping()  # reads still work
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
    """A sender: posts each event, retrying 503 and 409 as told, until a 2xx."""
    with requests.Session() as session:
        for event_id in event_ids:
            deadline = time.monotonic() + 30
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
                time.sleep(0.05)  # a real sender waits Retry-After; the test need not


@pytest.mark.postgres
def test_postgresql_backends_terminated_mid_burst(
    make_app: Callable[..., Flask], sandbox: SandboxServer, pg_migrated_url: str
) -> None:
    app = make_app(DATABASE_URL=pg_migrated_url)
    answers: dict[int, list[int]] = {}
    delivered: dict[int, str] = {}
    stop = threading.Event()
    terminated = [0]

    def terminator() -> None:
        with admin_connection() as conn:
            while not stop.wait(0.25):
                terminated[0] += terminate_backends(conn, _database(pg_migrated_url))

    events = list(range(1, 41))
    with wsgi_server(app) as url:
        killer = threading.Thread(target=terminator)
        killer.start()
        senders = [
            threading.Thread(
                target=send_until_answered, args=(url, events[i::4], answers, delivered)
            )
            for i in range(4)
        ]
        try:
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join()
        finally:
            stop.set()
            killer.join()
        assert terminated[0] > 0
        # Recovered by itself: the next webhook and readiness, at once.
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    assert set(delivered) == set(events)  # every sender got its 2xx in the end
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
