"""Stored webhook requests: each request that recorded a delivery, as received (its
credentials already redacted by the caller), and the answer its sender got.

The row is written in the transaction that records its first new delivery, so a request is
kept exactly when it created something to look at; its answer follows once it is answered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bridge.ledger.database import Database, now
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import webhook_requests

_r = webhook_requests.c


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


class Requests:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        """Keep the answer the sender got (the first one only: a request is answered once)."""
        params = {"p_id": request_id, "p_status": status, "p_body": body, "p_now": now()}
        with self.db.fast(write=True) as conn:
            self.db.prepared(_ANSWER).run(conn, params)

    def get(self, request_id: str) -> RequestRecord | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(webhook_requests).where(_r.id == request_id)).first()
        return None if row is None else _record(row)
