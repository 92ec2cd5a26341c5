"""The worker outlives a ledger outage: it logs, backs off and drains once the ledger is back,
without a restart (a SQLite write lock held past the busy timeout; PostgreSQL refusing
connections)."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.worker import Worker
from bridge.ledger import Ledger
from tests.conftest import ZAP_TOKEN


def queue(app: Flask, n: int) -> list[str]:
    client = app.test_client()
    ids = []
    for i in range(n):
        resp = client.post(
            "/hooks/zap-ack",
            json={"calendar_id": 7, "event_id": 700 + i},
            headers={"X-Bridge-Token": ZAP_TOKEN},
        )
        assert resp.status_code == 202
        ids.append(resp.get_json()["delivery_id"])
    return ids


def drained(ledger: Ledger, ids: list[str], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all((d := ledger.deliveries.get(i)) is not None and d.final for i in ids):
            return True
        time.sleep(0.05)
    return False


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop.set()
        thread.join(timeout=10)


def test_the_worker_waits_out_a_sqlite_lock_held_past_the_busy_timeout(
    make_app: Callable[..., Flask],
    sandbox: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app()
    bridge = app.extensions["bridge"]
    ids = queue(app, 3)
    # The worker's own ledger gives up on a lock after 0.2 s instead of 10 s.
    monkeypatch.setattr("bridge.ledger.database.SQLITE_BUSY_TIMEOUT", 0.2)
    ledger = Ledger(bridge.ledger.url)
    dispatcher = Dispatcher(ledger, bridge.client, rate=1000, timeout=(1.0, 2.0))
    worker = Worker(ledger, dispatcher, idle=0.05)
    holder = sqlite3.connect(str(tmp_path / "ledger.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with running(worker) as thread:
            time.sleep(1.5)
            assert thread.is_alive()
            assert sandbox.calls() == []
            holder.execute("COMMIT")
            assert drained(ledger, ids, within=15)
            assert thread.is_alive()
    finally:
        holder.close()
        ledger.dispose()
    assert len(sandbox.calls()) == 3
    assert "ledger unavailable" in caplog.text


class Gate:
    """A TCP port that refuses connections until opened, then forwards to `target`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()  # nothing listens here yet: connections are refused
        self._server: socket.socket | None = None

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.mark.postgres
def test_the_worker_waits_out_refused_postgresql_connections(
    make_app: Callable[..., Flask], sandbox: Any, pg_migrated_url: str
) -> None:
    app = make_app(DATABASE_URL=pg_migrated_url)
    bridge = app.extensions["bridge"]
    ids = queue(app, 3)
    real = sa.make_url(pg_migrated_url)
    gate = Gate((real.host or "127.0.0.1", real.port or 5432))
    ledger = Ledger(real.set(host="127.0.0.1", port=gate.port).render_as_string(False))
    dispatcher = Dispatcher(ledger, bridge.client, rate=1000, timeout=(1.0, 2.0))
    worker = Worker(ledger, dispatcher, idle=0.05)
    try:
        with running(worker) as thread:
            time.sleep(1.5)
            assert thread.is_alive() and sandbox.calls() == []
            gate.open()
            assert drained(bridge.ledger, ids, within=20)
            assert thread.is_alive()
    finally:
        ledger.dispose()
        gate.close()
    assert len(sandbox.calls()) == 3
