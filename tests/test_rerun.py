"""Re-run from the stored request: replaying a `mapping_error` delivery maps its stored request
again with the route file and links as they are now (no second verification), as a new
attempt on the same delivery; from the admin API, the command line and the service the
console calls, on SQLite and PostgreSQL, against the MeetBit sandbox."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from bridge.cli import cli
from bridge.delivery import admin, console
from bridge.delivery.service import Bridge
from tests.conftest import DEFAULT_ROUTES, ZAP_TOKEN, bridge_env

ADMIN = {"Authorization": "Bearer adm"}
BEARER = {"Authorization": f"Bearer {ZAP_TOKEN}"}
ZAP = {"X-Bridge-Token": ZAP_TOKEN}
# A route whose target reads a field the sender does not send (a mistake fixed later).
BROKEN = """
  crm:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    when: "payload.stage != 'won'"
    target: {calendar_id: "{{ payload.calendar }}", event_id: "{{ payload.event_id }}"}
    note: "Deal {{ payload.deal }} lost"
"""
FIXED = BROKEN.replace("payload.calendar }}", "payload.calendar_id }}")


@pytest.fixture
def app(make_app: Callable[..., Flask], database_url: str) -> Flask:
    return make_app(DEFAULT_ROUTES + BROKEN, BRIDGE_ADMIN_TOKEN="adm", DATABASE_URL=database_url)


@pytest.fixture
def bridge(app: Flask) -> Bridge:
    found: Bridge = app.extensions["bridge"]
    return found


def cancels(sandbox: Any) -> list[int]:
    return [c["event_id"] for c in sandbox.calls() if c["status"] == 200]


def test_a_link_stored_since_lets_the_replay_cancel(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    refused = client.post("/hooks/by-email", json={"email": "ann@example.com"}, headers=BEARER)
    assert refused.status_code == 422
    dlv = refused.get_json()["delivery_id"]
    # The sender's own retry is answered the stored 422: nothing was re-mapped for it.
    again = client.post("/hooks/by-email", json={"email": "ann@example.com"}, headers=BEARER)
    assert again.status_code == 422 and again.headers["Idempotent-Replayed"] == "true"

    bridge.ledger.links.put("ann@example.com", 12, 345)
    replayed = client.post(f"/admin/deliveries/{dlv}/replay", headers=ADMIN)
    assert replayed.status_code == 200
    answer = replayed.get_json()
    assert (answer["outcome"], answer["delivery_id"]) == ("canceled", dlv)
    assert answer["event"]["id"] == 345
    assert cancels(sandbox) == [345]

    detail = console.delivery_detail(bridge, dlv)
    assert (detail.delivery.status, detail.delivery.outcome) == ("succeeded", "canceled")
    assert [(a.kind, a.outcome, a.role, a.meetbit_status) for a in detail.attempts] == [
        ("remap", "mapped", "web", None),
        ("call", "canceled", "web", 200),
    ]
    assert not detail.attempts[0].sent
    # Once canceled it is final: the sender's retry now gets the success, with no new call.
    after = client.post("/hooks/by-email", json={"email": "ann@example.com"}, headers=BEARER)
    assert after.status_code == 200 and after.get_json()["outcome"] == "canceled"
    assert cancels(sandbox) == [345]


def test_a_route_fixed_since_is_replayed_from_the_command_line(
    client: FlaskClient, database_url: str, sandbox: Any, tmp_path: Path
) -> None:
    refused = client.post(
        "/hooks/crm", json={"calendar_id": 12, "event_id": 346, "deal": "Acme"}, headers=ZAP
    )
    assert refused.status_code == 422
    dlv = refused.get_json()["delivery_id"]

    env = {**bridge_env(sandbox, tmp_path, DEFAULT_ROUTES + FIXED), "DATABASE_URL": database_url}
    result = CliRunner().invoke(cli, ["deliveries", "replay", dlv, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "replayed 1: canceled: 1" in result.output
    assert cancels(sandbox) == [346]

    shown = client.get(f"/admin/deliveries/{dlv}", headers=ADMIN).get_json()
    assert (shown["status"], shown["outcome"]) == ("succeeded", "canceled")
    assert (shown["calendar_id"], shown["event_id"]) == (12, 346)
    assert shown["event"]["cancel_note"] == "Deal Acme lost"


def test_still_unmappable_or_now_ignored_is_a_remap_attempt_without_a_call(
    client: FlaskClient, bridge: Bridge, sandbox: Any, make_app: Callable[..., Flask]
) -> None:
    first = client.post("/hooks/crm", json={"event_id": 347, "stage": "won?"}, headers=ZAP)
    dlv = first.get_json()["delivery_id"]
    [item] = admin.replay(bridge, admin.select_replay(bridge.ledger, [dlv])).replayed
    assert item.outcome == "failed"
    assert (item.delivery.status, item.delivery.outcome) == ("failed", "mapping_error")
    timeline = console.delivery_detail(bridge, dlv).attempts
    assert [(a.kind, a.outcome, a.error_kind) for a in timeline] == [
        ("remap", "mapping_error", "mapping_error")
    ]
    assert "calendar_id" in (timeline[0].error or "")

    broken_then = client.post("/hooks/crm", json={"event_id": 349, "stage": "x"}, headers=ZAP)
    dlv2 = broken_then.get_json()["delivery_id"]
    # The route now ignores these: the re-run says so, and calls nothing.
    now_ignoring = DEFAULT_ROUTES + BROKEN.replace("payload.stage != 'won'", "false")
    later = make_app(now_ignoring, BRIDGE_ADMIN_TOKEN="adm", DATABASE_URL=bridge.ledger.url)
    replayed = later.test_client().post(f"/admin/deliveries/{dlv2}/replay", headers=ADMIN)
    assert replayed.status_code == 200 and replayed.get_json()["outcome"] == "ignored"
    assert cancels(sandbox) == []


def test_an_emails_every_linked_event_is_canceled_by_the_rerun(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    dlv = client.post(
        "/hooks/by-email", json={"email": "bo@example.com"}, headers=BEARER
    ).get_json()["delivery_id"]
    bridge.ledger.links.put("bo@example.com", 12, 401)
    bridge.ledger.links.put("bo@example.com", 12, 402)
    [item] = admin.replay(bridge, admin.select_replay(bridge.ledger, [dlv])).replayed
    assert item.outcome == "canceled" and item.delivery.event_id == 401
    detail = console.delivery_detail(bridge, dlv)
    [sibling] = detail.siblings
    assert (sibling.event_id, sibling.status, sibling.outcome) == (402, "succeeded", "canceled")
    assert sorted(cancels(sandbox)) == [401, 402]
