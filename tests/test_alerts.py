"""Alerts (`BRIDGE_ALERT_URL`): posted to a real loopback receiver when a delivery becomes dead,
when MeetBit refuses the bridge's keys and when a 429 pause lasts over a minute; at most one
per kind per 15 minutes across processes (through the ledger), never in a webhook's way."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from bridge.alerts import KINDS
from bridge.delivery.alerting import WINDOW, Alerter
from bridge.delivery.service import Bridge
from bridge.ledger import Ledger, tables
from bridge.testing import wsgi_server
from tests.conftest import DEFAULT_ROUTES, ZAP_TOKEN

ZAP = {"X-Bridge-Token": ZAP_TOKEN}
ROUTES = (
    DEFAULT_ROUTES
    + """
  zap-once:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    max_attempts: 1
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled once"
"""
)


class Receiver:
    """A Slack-like incoming webhook: takes JSON posts, answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.status = "200 OK"
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size)
        with self.lock:
            self.posts.append(json.loads(body))
            self.content_types.append(environ.get("CONTENT_TYPE", ""))
        start_response(self.status, [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    with wsgi_server(found) as url:
        yield found, url + "/services/T000/B000/secret-path"


def alerter_of(app: Flask) -> Alerter:
    bridge: Bridge = app.extensions["bridge"]
    assert bridge.dispatcher.alerts is not None
    return bridge.dispatcher.alerts


def test_a_dead_delivery_is_posted_once_per_window_with_the_count(
    make_app: Callable[..., Flask],
    database_url: str,
    receiver: tuple[Receiver, str],
    sandbox: Any,
) -> None:
    got, url = receiver
    app = make_app(
        ROUTES,
        BRIDGE_ALERT_URL=url,
        BRIDGE_PUBLIC_URL="https://bridge.example.com",
        DATABASE_URL=database_url,
    )
    client = app.test_client()
    sandbox.state.update_config({"failure_rate": 1.0})
    body = {"calendar_id": 12, "event_id": 345}
    assert client.post("/hooks/zap-once", json=body, headers=ZAP).status_code == 502
    assert alerter_of(app).flush()
    assert got.posts == [
        {
            "text": KINDS["dead"].text.format(count=1),
            "kind": "dead",
            "count": 1,
            "url": "https://bridge.example.com/console/deliveries?status=dead",
        }
    ]
    assert got.content_types == ["application/json"]

    # Two more within the window, one of them from another process on the same ledger.
    body2 = {"calendar_id": 12, "event_id": 346}
    assert client.post("/hooks/zap-once", json=body2, headers=ZAP).status_code == 502
    other = Ledger(database_url)
    try:
        elsewhere = Alerter(other, url)
        elsewhere.notify("dead")
        assert elsewhere.flush()
        elsewhere.close()
        assert alerter_of(app).flush()
        assert len(got.posts) == 1
        # The window has passed: the next one says what was held back.
        with other.db.write() as conn:
            conn.execute(
                sa.update(tables.alerts).values(
                    last_sent_at=datetime.now(UTC) - timedelta(seconds=WINDOW + 1)
                )
            )
    finally:
        other.dispose()
    body3 = {"calendar_id": 12, "event_id": 347}
    assert client.post("/hooks/zap-once", json=body3, headers=ZAP).status_code == 502
    assert alerter_of(app).flush()
    assert [(p["kind"], p["count"]) for p in got.posts] == [("dead", 1), ("dead", 3)]


def test_rejected_keys_and_a_long_pause_are_posted(
    make_app: Callable[..., Flask], receiver: tuple[Receiver, str], sandbox: Any
) -> None:
    got, url = receiver
    wrong = make_app(ROUTES, BRIDGE_ALERT_URL=url, MEETBIT_ACCESS_KEY_SECRET="not-the-secret")
    answer = wrong.test_client().post(
        "/hooks/zap", json={"calendar_id": 12, "event_id": 345}, headers=ZAP
    )
    assert answer.status_code == 502
    assert alerter_of(wrong).flush()
    assert [(p["kind"], p["count"], p["url"]) for p in got.posts] == [
        ("meetbit_auth", 1, "/console")
    ]

    # Another app on the bridge's key spends the budget and MeetBit locks the key out for two
    # minutes (the bridge's own limiter never overruns MeetBit's rate, so it cannot be the one
    # to provoke the 429).
    sandbox.state.update_config({"rate_limit": 1, "retry_after": 120})
    key = sandbox.config.key_id
    while sandbox.state.limiter.admit(key, time.time())[0]:
        pass
    app = make_app(ROUTES, BRIDGE_ALERT_URL=url)
    client = app.test_client()
    statuses = [
        client.post("/hooks/zap", json={"calendar_id": 12, "event_id": e}, headers=ZAP).status_code
        for e in (400, 401, 402)
    ]
    assert 502 in statuses or 202 in statuses  # the 429 reached the bridge
    assert alerter_of(app).flush()
    assert [p["kind"] for p in got.posts] == ["meetbit_auth", "paused"]


def test_a_failing_receiver_never_touches_the_webhook(
    make_app: Callable[..., Flask],
    receiver: tuple[Receiver, str],
    sandbox: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    got, url = receiver
    got.status = "500 Internal Server Error"
    app = make_app(ROUTES, BRIDGE_ALERT_URL=url)
    sandbox.state.update_config({"failure_rate": 1.0})
    answer = app.test_client().post(
        "/hooks/zap-once", json={"calendar_id": 12, "event_id": 345}, headers=ZAP
    )
    assert answer.status_code == 502  # the webhook's own answer, as without alerts
    assert alerter_of(app).flush()
    assert len(got.posts) == 1
    assert "alert dead not delivered: the alert receiver answered 500" in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bridge"))
    assert "secret-path" not in ours  # the URL is a credential

    unreachable = make_app(ROUTES, BRIDGE_ALERT_URL="http://127.0.0.1:9/hook")
    ledger = unreachable.extensions["bridge"].ledger  # the same ledger: forget the last one sent
    with ledger.db.write() as conn:
        conn.execute(sa.delete(tables.alerts))
    answer = unreachable.test_client().post(
        "/hooks/zap-once", json={"calendar_id": 12, "event_id": 346}, headers=ZAP
    )
    assert answer.status_code == 502
    assert alerter_of(unreachable).flush()
    assert "could not be reached (ConnectionError)" in caplog.text


def test_without_a_url_nothing_is_sent_and_kinds_are_checked(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    app = make_app(ROUTES)
    alerts = alerter_of(app)
    assert not alerts.enabled
    alerts.notify("dead")  # a no-op
    with pytest.raises(ValueError, match="unknown alert kind"):
        alerts.notify("nope")
    assert set(KINDS) >= {"dead", "meetbit_auth", "paused"}
