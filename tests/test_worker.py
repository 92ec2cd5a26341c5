"""The worker loop: claims due deliveries, heartbeats, hands back what it cannot finish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from bridge.delivery.service import Bridge
from bridge.delivery.worker import Worker
from tests.conftest import ZAP_TOKEN


def queue(app: Flask, n: int) -> list[str]:
    client = app.test_client()
    ids = []
    for i in range(n):
        resp = client.post(
            "/hooks/zap-ack",
            json={"calendar_id": 9, "event_id": 900 + i},
            headers={"X-Bridge-Token": ZAP_TOKEN},
        )
        assert resp.status_code == 202
        ids.append(resp.get_json()["delivery_id"])
    return ids


def test_the_worker_delivers_what_ack_routes_queued(app: Flask, sandbox: Any) -> None:
    bridge: Bridge = app.extensions["bridge"]
    ids = queue(app, 3)
    worker = Worker(bridge.ledger, bridge.dispatcher, batch=10)
    assert worker.run_once() == 3
    assert [bridge.ledger.get(i).status for i in ids] == ["succeeded"] * 3  # type: ignore[union-attr]
    assert sorted(c["event_id"] for c in sandbox.calls()) == [900, 901, 902]
    assert worker.run_once() == 0


def test_a_live_worker_turns_a_502_into_a_202(make_app: Callable[..., Flask], sandbox: Any) -> None:
    app = make_app()
    bridge: Bridge = app.extensions["bridge"]
    worker = Worker(bridge.ledger, bridge.dispatcher)
    worker.heartbeat()
    sandbox.config.failure_rate = 1.0
    resp = app.test_client().post(
        "/hooks/zap",
        json={"calendar_id": 9, "event_id": 990},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    assert resp.status_code == 202
    assert resp.get_json()["outcome"] == "queued"
    worker.stop.set()
    worker.run()  # stops at once and says goodbye
    assert bridge.ledger.workers_alive() == 0


def test_stop_hands_back_the_rest_of_the_batch(app: Flask, sandbox: Any) -> None:
    bridge: Bridge = app.extensions["bridge"]
    ids = queue(app, 2)
    worker = Worker(bridge.ledger, bridge.dispatcher, batch=10)
    worker.stop.set()
    assert worker.run_once() == 0
    assert [bridge.ledger.get(i).status for i in ids] == ["pending"] * 2  # type: ignore[union-attr]
    assert sandbox.calls() == []
