"""Stored webhook requests: each request that recorded a delivery, as received (its
credentials already redacted by the caller), and the answer its sender got.

The row is written in the transaction that records its first new delivery, so a request is
kept exactly when it created something to look at. Its answer follows from a background
thread (`AnswerWriter`) that writes every answer queued meanwhile in one transaction: a
sender is never kept waiting for a copy of what it was told, and a burst of webhooks adds
one write transaction per batch, not one per webhook, to the ledger's single writer (SQLite)
or its commit fsyncs (PostgreSQL). A process killed in between loses only those copies.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.errors import LedgerUnavailable
from bridge.ledger.database import Database, now
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import webhook_requests

log = logging.getLogger(__name__)

_r = webhook_requests.c
# Answers written in one transaction at most.
ANSWER_BATCH = 200


def new_request_id() -> str:
    """`req_` + 128 random bits, like delivery ids."""
    return "req_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class RequestRecord:
    """One webhook request as stored: headers as (lower-cased name, value) pairs in the order
    received, credentials redacted; the body as received (at most `BRIDGE_MAX_BODY` bytes)."""

    id: str
    route: str
    received_at: datetime
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    content_type: str
    body: bytes
    answer_status: int | None = None
    answer_body: str | None = None
    answered_at: datetime | None = None

    @property
    def header_map(self) -> dict[str, str]:
        return dict(self.headers)


_INSERT = sa.insert(webhook_requests).values(
    {
        c.name: sa.bindparam(c.name, type_=c.type)
        for c in webhook_requests.c
        if c.name not in ("answer_status", "answer_body", "answered_at")
    }
)
_ANSWER = (
    sa.update(webhook_requests)
    .where(_r.id == sa.bindparam("p_id", type_=_r.id.type), _r.answer_status.is_(None))
    .values(
        answer_status=sa.bindparam("p_status", type_=_r.answer_status.type),
        answer_body=sa.bindparam("p_body", type_=_r.answer_body.type),
        answered_at=sa.bindparam("p_now", type_=_r.answered_at.type),
    )
)


def _record(row: Any) -> RequestRecord:
    values = dict(row._mapping)
    values["headers"] = [(str(k), str(v)) for k, v in values["headers"] or []]
    values["body"] = bytes(values["body"])
    return RequestRecord(**values)


class AnswerWriter:
    """Writes queued answers from a daemon thread, each batch in one transaction. The thread
    starts with the first answer in each process (a fork does not inherit it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[tuple[str, int, str, datetime] | None] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._pid = 0
        self._lock = threading.Lock()

    def put(self, request_id: str, status: int, body: str) -> None:
        with self._done:
            self._pending += 1
        self._queue.put((request_id, status, body, now()))
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._pid = os.getpid()
                    threading.Thread(target=self._run, name="ledger-answers", daemon=True).start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every answer queued so far is written (or given up); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        """Write what is queued (briefly), then end the thread; a later answer starts one."""
        self.flush(timeout=2.0)
        with self._lock:
            if self._pid == os.getpid():
                self._queue.put(None)
                self._pid = 0

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < ANSWER_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # end after this batch
                    break
                batch.append(item)
            try:
                with self.db.fast(write=True) as conn:
                    prepared = self.db.prepared(_ANSWER)
                    for request_id, status, body, at in batch:
                        prepared.run(
                            conn,
                            {"p_id": request_id, "p_status": status, "p_body": body, "p_now": at},
                        )
            except (LedgerUnavailable, ValueError) as exc:
                # The deliveries and their requests are stored; only these copies are lost.
                log.warning("%d answers were not stored: %s", len(batch), exc)
            except Exception:  # the thread must outlive anything, or answers pile up
                log.exception("%d answers were not stored", len(batch))
            finally:
                with self._done:
                    self._pending -= len(batch)
                    self._done.notify_all()


class Requests:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.answers = AnswerWriter(db)

    def insert_in(self, conn: Conn, record: RequestRecord) -> None:
        values = {
            "id": record.id,
            "route": record.route,
            "received_at": record.received_at,
            "method": record.method,
            "path": record.path,
            "query": record.query,
            "headers": [list(pair) for pair in record.headers],
            "content_type": record.content_type,
            "body": record.body,
        }
        self.db.prepared(_INSERT).run(conn, values)

    def answer(self, request_id: str, status: int, body: str) -> None:
        """Keep the answer the sender got (the first one only: a request is answered once),
        written soon after by the background writer (`flush` waits for it)."""
        self.answers.put(request_id, status, body)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.answers.flush(timeout)

    def get(self, request_id: str) -> RequestRecord | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(webhook_requests).where(_r.id == request_id)).first()
        return None if row is None else _record(row)
