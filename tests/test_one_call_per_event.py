"""At most one MeetBit call in flight per event: deliveries of one event with different
idempotency keys, sent at once, make one call and are all answered as canceled."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask import Flask

from tests.conftest import ZAP_TOKEN


def test_twenty_deliveries_of_one_event_make_one_call(
    make_app: Callable[..., Flask], sandbox: Any, database_url: str
) -> None:
    app = make_app(DATABASE_URL=database_url)
    sandbox.config.latency = 0.3  # the first call is still in flight when the others arrive
    barrier = threading.Barrier(20)

    def send(i: int) -> tuple[int, dict[str, Any]]:
        client = app.test_client()
        barrier.wait(timeout=10)
        resp = client.post(
            "/hooks/zap",
            json={"calendar_id": 12, "event_id": 4242},
            headers={"X-Bridge-Token": ZAP_TOKEN, "Idempotency-Key": f"sender-{i}"},
        )
        return resp.status_code, resp.get_json()

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))

    cancels = [c for c in sandbox.calls() if c["event_id"] == 4242]
    assert len(cancels) == 1
    assert sorted(status for status, _ in answers) == [200] * 20
    outcomes = sorted(body["outcome"] for _, body in answers)
    assert outcomes == ["already_canceled"] * 19 + ["canceled"]
    # Every sender gets the event as MeetBit returned it, not a bare acknowledgement.
    assert all(body["event"] is not None for _, body in answers)


def test_a_404_for_an_event_canceled_meanwhile_is_already_canceled(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    app = make_app()
    ledger = app.extensions["bridge"].ledger
    # Someone canceled the event in MeetBit itself; its webhook has not reached us yet.
    gone = requests.post(
        f"{sandbox.url}/api/public/v2.0/calendars/12/events/4343/cancel",
        json={"cancel_note": "canceled in MeetBit"},
        headers={
            "X-Access-Key-Id": sandbox.config.key_id,
            "X-Access-Key-Secret": sandbox.config.key_secret,
        },
        timeout=5,
    )
    assert gone.status_code == 200
    sandbox.config.latency = 0.5
    answer: dict[str, Any] = {}

    def send() -> None:
        resp = app.test_client().post(
            "/hooks/zap",
            json={"calendar_id": 12, "event_id": 4343},
            headers={"X-Bridge-Token": ZAP_TOKEN},
        )
        answer.update(status=resp.status_code, body=resp.get_json())

    thread = threading.Thread(target=send)
    thread.start()
    while ledger.queries.counts_by_status()["in_flight"] == 0:
        time.sleep(0.01)
    # MeetBit's events.deleted webhook arrives while our call is on its way.
    ledger.canceled.mark(12, 4343, source="meetbit", event=None)
    thread.join(timeout=10)
    assert answer["status"] == 200
    assert answer["body"]["outcome"] == "already_canceled"
