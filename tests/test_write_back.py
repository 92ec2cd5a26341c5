"""Write-back end to end on the Flask test client, the MeetBit sandbox and a loopback Standard
Webhooks receiver: jobs made with the final outcome, delivered by the worker's runner, shown
in the admin API and /metrics, replayed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Request, Response
from standardwebhooks import Webhook

from bridge.delivery.service import Bridge
from bridge.delivery.write_backs import WriteBackRunner
from bridge.testing import wsgi_server
from tests.conftest import ZAP_TOKEN
from tests.test_console import sign_in

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A Standard Webhooks receiver that verifies every call and answers as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = Webhook(SECRET).verify(body, headers)
        with self.lock:
            self.received.append({"headers": headers, "body": verified})
        response = Response(json.dumps({"ok": True}), self.status, mimetype="application/json")
        return response(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver()
    with wsgi_server(app) as url:
        yield app, url


def routes(url: str, on: str = "[canceled]") -> str:
    return f"""
routes:
  zap:
    preset: generic
    auth: {{header: X-Bridge-Token, token_env: ZAP_TOKEN}}
    target: {{calendar_id: "{{{{ payload.calendar_id }}}}", event_id: "{{{{ payload.event_id }}}}"}}
    note: "Deal lost"
    max_attempts: 2
    write_back:
      - to: webhook
        url: {url}/catch
        secret_env: OUTCOME_SECRET
        text: >-
          Meeting {{{{ result.event_id }}}} of deal {{{{ payload.deal }}}}: {{{{ result.outcome }}}}
        on: {on}
"""


def post(app: Flask, event_id: int, deal: str = "D-1") -> Any:
    resp = app.test_client().post(
        "/hooks/zap",
        json={"calendar_id": 7, "event_id": event_id, "deal": deal},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    return resp


def runner(app: Flask) -> WriteBackRunner:
    bridge: Bridge = app.extensions["bridge"]
    return WriteBackRunner(bridge.ledger, bridge.routes, retry_backoff=(0.01, 0.02))


def test_a_cancel_writes_the_outcome_back_once_signed_by_standard_webhooks(
    make_app: Callable[..., Flask], receiver: tuple[Receiver, str]
) -> None:
    fake, url = receiver
    app = make_app(routes(url), OUTCOME_SECRET=SECRET, BRIDGE_ADMIN_TOKEN="adm")
    resp = post(app, 501)
    assert resp.status_code == 200
    delivery_id = resp.get_json()["delivery_id"]
    assert fake.received == []  # the web process never writes back: the worker does
    run = runner(app)
    assert run.run_once() is True
    assert run.run_once() is False
    [call] = fake.received
    detail = app.test_client().get(
        f"/admin/deliveries/{delivery_id}", headers={"Authorization": "Bearer adm"}
    )
    [wb] = detail.get_json()["write_backs"]
    assert wb["to"] == "webhook" and wb["status"] == "succeeded" and wb["attempts"] == 1
    assert call["headers"]["webhook-id"] == wb["id"] == wb["created_id"]
    data = call["body"]["data"]
    assert data["outcome"] == "canceled" and data["delivery_id"] == delivery_id
    assert data["text"] == f"Meeting 501 of deal D-1: canceled [{delivery_id}]"
    assert data["event"]["id"] == 501
    # The same webhook again is answered from the ledger: no second job, no second call.
    assert post(app, 501).get_json()["delivery_id"] == delivery_id
    assert run.run_once() is False and len(fake.received) == 1
    # The console's page of the delivery shows it too.
    console = app.test_client()
    sign_in(console, "adm", f"/console/deliveries/{delivery_id}")
    page = console.get(f"/console/deliveries/{delivery_id}").get_data(as_text=True)
    assert "Write-backs" in page and wb["id"] in page and "succeeded" in page


def test_a_failing_receiver_never_changes_the_senders_answer_and_ends_dead(
    make_app: Callable[..., Flask], receiver: tuple[Receiver, str]
) -> None:
    fake, url = receiver
    fake.status = 403
    app = make_app(routes(url), OUTCOME_SECRET=SECRET, BRIDGE_ADMIN_TOKEN="adm")
    resp = post(app, 502)
    assert resp.status_code == 200 and resp.get_json()["outcome"] == "canceled"
    bridge: Bridge = app.extensions["bridge"]
    run = runner(app)
    delivery_id = resp.get_json()["delivery_id"]
    for _ in range(2):
        # Due again after the (tiny) backoff: wait on the condition, not a fixed sleep.
        while not run.run_once():
            run.stop.wait(0.01)
    [job] = bridge.ledger.write_backs.for_delivery(delivery_id)
    assert (job.status, job.attempts, job.last_error) == ("dead", 2, 'HTTP 403: {"ok": true}')
    assert len(fake.received) == 2
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'meetbit_bridge_write_backs_total{status="dead",to="webhook"} 1.0' in metrics
    # Replayed: queued again, delivered once the receiver accepts.
    fake.status = 200
    from bridge.delivery import admin

    queued, unknown = admin.replay_write_backs(bridge.ledger, [delivery_id])
    assert [j.id for j in queued] == [job.id] and unknown == []
    assert run.run_once() is True
    assert bridge.ledger.write_backs.for_delivery(delivery_id)[0].status == "succeeded"


def test_on_selects_the_outcomes_written_back(
    make_app: Callable[..., Flask], receiver: tuple[Receiver, str], sandbox: Any
) -> None:
    fake, url = receiver
    app = make_app(routes(url, on="[not_found]"), OUTCOME_SECRET=SECRET)
    bridge: Bridge = app.extensions["bridge"]
    canceled = post(app, 503).get_json()["delivery_id"]
    missing = post(app, 900_001).get_json()  # the sandbox has no such event
    assert missing["outcome"] == "not_found"
    assert bridge.ledger.write_backs.for_delivery(canceled) == []
    [job] = bridge.ledger.write_backs.for_delivery(missing["delivery_id"])
    assert job.outcome == "not_found"
    assert runner(app).run_once() is True
    assert fake.received[0]["body"]["data"]["outcome"] == "not_found"
