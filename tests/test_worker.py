"""The worker loop: claims due deliveries, heartbeats, hands back what it cannot finish."""

from __future__ import annotations

import threading
import time
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
    assert [bridge.ledger.deliveries.get(i).status for i in ids] == ["succeeded"] * 3  # type: ignore[union-attr]
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
    assert bridge.ledger.coordination.workers_alive() == 0


def test_stop_finishes_the_delivery_in_hand_and_leaves_the_rest_queued(
    app: Flask, sandbox: Any
) -> None:
    bridge: Bridge = app.extensions["bridge"]
    ids = queue(app, 3)
    sandbox.config.latency = 0.5  # the first cancel is still in flight when stop is asked
    worker = Worker(bridge.ledger, bridge.dispatcher, batch=10)
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 10
    while bridge.ledger.queries.counts_by_status()["in_flight"] == 0:
        assert time.monotonic() < deadline, "the worker never started an attempt"
        time.sleep(0.01)
    worker.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    statuses = [bridge.ledger.deliveries.get(i).status for i in ids]  # type: ignore[union-attr]
    # The one in hand was finished, not abandoned with its lease; the others wait, unclaimed.
    assert statuses == ["succeeded", "pending", "pending"]
    assert len(sandbox.calls()) == 1
    assert bridge.ledger.coordination.workers_alive() == 0  # it said goodbye
