"""What the operator console reads from the ledger, through the services it calls: each
webhook kept as received with its credentials redacted and the answer its sender got, a
delivery's whole story, the log's search, the overview figures and bulk replays; on SQLite and
PostgreSQL, through the Flask test client against the MeetBit sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient

from bridge.core.rate import JITTER
from bridge.delivery import admin, bulk, console
from bridge.delivery.admin import DeliveryQuery
from bridge.delivery.capture import REDACTED
from bridge.delivery.service import Bridge
from bridge.demo.samples import demo_samples
from bridge.errors import InvalidQuery, NotFound
from bridge.ledger import Ledger, tables
from bridge.sources import PRESETS
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


@pytest.fixture
def app(make_app: Callable[..., Flask], database_url: str) -> Flask:
    return make_app(ROUTES, BRIDGE_ADMIN_TOKEN="adm", DATABASE_URL=database_url)


@pytest.fixture
def bridge(app: Flask) -> Bridge:
    found: Bridge = app.extensions["bridge"]
    return found


def hook(client: FlaskClient, event_id: int, route: str = "zap", **extra: Any) -> Any:
    return client.post(
        f"/hooks/{route}", json={"calendar_id": 12, "event_id": event_id, **extra}, headers=ZAP
    )


def stored_requests(ledger: Ledger) -> list[Any]:
    assert ledger.requests.flush()  # answers are written by a background thread
    with ledger.db.read() as conn:
        return list(conn.execute(sa.select(tables.webhook_requests)).all())


# -- the request as received ------------------------------------------------------------------


def test_a_webhook_is_kept_as_received_without_its_credentials(app: Flask, bridge: Bridge) -> None:
    client = app.test_client(use_cookies=False)  # so that the Cookie header goes as written
    body = json.dumps({"calendar_id": 12, "event_id": 345, "note": "Lost <b>deal</b>"})
    response = client.post(
        "/hooks/zap?token=t0p-s3cret-value&ref=crm",
        data=body,
        headers={
            **ZAP,
            "Content-Type": "application/json",
            "Authorization": "Basic dXNlcjpwYXNzd29yZA==",
            "Cookie": "session=abcdef123456",
            "X-Api-Key": "k-998877665544",
            "X-Trace": "trace-1",
            "Idempotency-Key": "crm-42",
        },
    )
    assert response.status_code == 200
    delivery = bridge.ledger.deliveries.get(response.get_json()["delivery_id"])
    assert delivery is not None and delivery.request_id is not None
    assert bridge.ledger.requests.flush()  # answers are written by a background thread
    request = bridge.ledger.requests.get(delivery.request_id)
    assert request is not None
    headers = request.header_map
    for name in ("x-bridge-token", "authorization", "cookie", "x-api-key"):
        assert headers[name] == REDACTED
    assert headers["x-trace"] == "trace-1"
    assert headers["idempotency-key"] == "crm-42"  # the sender's delivery id: kept, searchable
    assert (request.method, request.path, request.route) == ("POST", "/hooks/zap", "zap")
    assert request.query == "token=%5Bredacted%5D&ref=crm"
    assert request.body == body.encode()
    assert request.content_type == "application/json"
    # The answer exactly as the sender got it.
    assert request.answer_status == 200
    assert json.loads(request.answer_body or "") == response.get_json()
    everything = repr(stored_requests(bridge.ledger))
    for secret in (ZAP_TOKEN, "dXNlcjpwYXNzd29yZA", "abcdef123456", "k-998877665544", "t0p-s3"):
        assert secret not in everything


def test_error_answers_are_kept_and_duplicates_or_refusals_store_nothing_more(
    client: FlaskClient, bridge: Bridge
) -> None:
    unknown = client.post(
        "/hooks/by-email",
        json={"email": "nobody@example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    assert unknown.status_code == 422
    again = client.post(
        "/hooks/by-email",
        json={"email": "nobody@example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    refused = client.post("/hooks/zap", json={"calendar_id": 1, "event_id": 2})
    assert refused.status_code == 401
    dry = client.post("/hooks/zap?dry_run=1", json={"calendar_id": 1, "event_id": 2}, headers=ZAP)
    assert dry.status_code == 200

    [row] = stored_requests(bridge.ledger)
    assert row.answer_status == 422
    assert json.loads(row.answer_body) == unknown.get_json()
    assert dict(row.headers)["authorization"] == REDACTED


def test_every_presets_signature_and_credentials_are_redacted(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    samples = demo_samples()
    env: dict[str, str] = {}
    for sample in samples:
        env.update(sample.env)
    app = make_app(
        yaml.safe_dump({"routes": {s.route: s.route_config for s in samples}}),
        **env,
        DATABASE_URL=database_url,
        BRIDGE_ADMIN_TOKEN="adm",
    )
    client = app.test_client()
    bridge: Bridge = app.extensions["bridge"]
    sent: dict[str, dict[str, str]] = {}
    for sample in samples:
        for call in sample.calls:
            for method, path, body in call.before:
                client.open(path, method=method, json=body, headers={"Authorization": "Bearer adm"})
            raw, headers = call.build(f"http://localhost/hooks/{sample.route}")
            client.post(f"/hooks/{sample.route}", data=raw, headers=headers)
            sent[sample.route] = {k.lower(): v for k, v in headers.items()}
    rows = stored_requests(bridge.ledger)
    presets = {bridge.routes[r.route].preset for r in rows}
    assert presets == set(PRESETS)  # a request of every preset was kept
    signed = {name for name, cls in PRESETS.items() if cls.signature_headers}
    assert signed == {"hubspot", "hubspot-workflow", "zendesk", "standard"}
    for row in rows:
        stored = dict(row.headers)
        source = bridge.routes[row.route].source
        for name in source.credential_headers():
            if name in stored:
                assert stored[name] == REDACTED, (row.route, name)
        for name, value in sent[row.route].items():
            if name in source.credential_headers() and len(value) >= 8:
                assert value not in repr(tuple(row)), (row.route, name)


# -- a delivery's whole story -----------------------------------------------------------------


def test_delivery_detail_tells_the_whole_story(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    failed = hook(client, 345)
    assert failed.status_code == 502
    dlv = failed.get_json()["delivery_id"]
    sandbox.state.update_config({"failure_rate": 0.0})
    selection = admin.select_replay(bridge.ledger, [dlv])
    assert admin.replay(bridge, selection).replayed[0].outcome == "canceled"

    assert bridge.ledger.requests.flush()
    detail = console.delivery_detail(bridge, dlv)
    assert detail.delivery.status == "succeeded" and detail.outcome == "canceled"
    assert [(a.number, a.kind, a.role, a.meetbit_status, a.sent) for a in detail.attempts] == [
        (1, "call", "web", 500, True),
        (1, "call", "web", 200, True),
    ]
    first = detail.attempts[0]
    assert first.error_kind is not None and first.error
    assert 0 <= first.latency_ms < 5000
    assert detail.request is not None and detail.request.answer_status == 502
    assert detail.mapping.configured and detail.mapping.preset == "generic"
    assert detail.mapping.target == {
        "calendar_id": "{{ payload.calendar_id }}",
        "event_id": "{{ payload.event_id }}",
    }
    assert detail.event is not None and detail.event["id"] == 345
    assert not detail.replayable and detail.siblings == []
    with pytest.raises(NotFound):
        console.delivery_detail(bridge, "dlv_unknown")


def test_an_emails_deliveries_share_their_request(client: FlaskClient, bridge: Bridge) -> None:
    bridge.ledger.links.put("ann@example.com", 12, 501)
    bridge.ledger.links.put("ann@example.com", 12, 502)
    answer = client.post(
        "/hooks/by-email",
        json={"email": "Ann@Example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    assert answer.status_code == 200
    first, second = (d["id"] for d in answer.get_json()["deliveries"])
    detail = console.delivery_detail(bridge, first)
    assert [d.id for d in detail.siblings] == [second]
    assert detail.mapping.target == {"customer_email": "{{ payload.email }}"}


# -- the log's search -------------------------------------------------------------------------


def test_search_finds_by_id_key_calendar_event_and_email(
    client: FlaskClient, bridge: Bridge
) -> None:
    ledger = bridge.ledger
    ids = [hook(client, 700 + n).get_json()["delivery_id"] for n in range(3)]
    keyed = client.post(
        "/hooks/zap",
        json={"calendar_id": 77, "event_id": 800},
        headers={**ZAP, "Idempotency-Key": "crm-deal-9"},
    ).get_json()["delivery_id"]
    ledger.links.put("bo@example.com", 12, 701)

    def found(text: str, **filters: Any) -> list[str]:
        page = admin.list_deliveries(ledger, DeliveryQuery(search=text, **filters))
        return [d.id for d in page.items]

    assert found(ids[0]) == [ids[0]]
    assert found("crm-deal-9") == [keyed]
    assert found("77") == [keyed]  # a calendar id
    assert found("702") == [ids[2]]  # an event id
    assert found("12") == [ids[2], ids[1], ids[0]]  # calendar 12, newest first
    assert found(" BO@example.com ") == [ids[1]]  # through the email's links
    assert found("nobody@example.com") == []
    assert found("12", route="zap-ack") == []
    assert found("12", status="succeeded", limit=2) == [ids[2], ids[1]]
    page = admin.list_deliveries(ledger, DeliveryQuery(search="12", limit=2))
    rest = admin.list_deliveries(ledger, DeliveryQuery(search="12", cursor=page.next_cursor))
    assert [d.id for d in rest.items] == [ids[0]] and rest.next_cursor is None
    with pytest.raises(InvalidQuery) as refused:
        admin.list_deliveries(ledger, DeliveryQuery(search="a\x00b"))
    assert "search" in (refused.value.errors or {})


def test_the_admin_api_searches_too(client: FlaskClient) -> None:
    dlv = hook(client, 345).get_json()["delivery_id"]
    auth = {"Authorization": "Bearer adm"}
    listed = client.get("/admin/deliveries?search=345", headers=auth).get_json()
    assert [d["id"] for d in listed["deliveries"]] == [dlv]
    too_long = client.get("/admin/deliveries?search=" + "x" * 400, headers=auth)
    assert too_long.status_code == 422
    assert "search" in too_long.get_json()["errors"]


# -- the overview -----------------------------------------------------------------------------


def test_overview_counts_windows_dead_queue_rate_and_heartbeat(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    ledger = bridge.ledger
    # An old success, outside both windows.
    old = hook(client, 348).get_json()["delivery_id"]
    with ledger.db.write() as conn:
        conn.execute(
            sa.update(tables.deliveries)
            .where(tables.deliveries.c.id == old)
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
    assert hook(client, 345).status_code == 200
    queued = client.post("/hooks/zap-ack", json={"calendar_id": 12, "event_id": 346}, headers=ZAP)
    assert queued.status_code == 202
    sandbox.state.update_config({"failure_rate": 1.0})
    assert hook(client, 347, route="zap-once").status_code == 502
    ledger.rate.pause("meetbit", until=time.time() + 120)
    ledger.coordination.heartbeat("worker-a")

    figures = console.overview(bridge)
    hour, day = figures.windows
    assert (hour.seconds, day.seconds) == (3600, 86400)
    assert hour.by_status["succeeded"] == 1 and hour.by_status["dead"] == 1
    assert hour.by_status["pending"] == 1
    assert hour.by_outcome["canceled"] == 1 and hour.by_outcome["failed"] == 1
    assert sum(day.by_status.values()) == 3  # the old one is in neither window
    assert figures.dead == 1
    assert figures.queue_depth == 1
    assert figures.oldest_queued_age is not None and 0 <= figures.oldest_queued_age < 60
    assert figures.rate_limit == 1000
    assert figures.paused_until is not None
    assert 100 < (figures.paused_until - figures.at).total_seconds() <= 120 + JITTER
    assert figures.last_heartbeat is not None and figures.worker_alive


# -- bulk replays -----------------------------------------------------------------------------


def wait_finished(bridge: Bridge, replay_id: str, timeout: float = 30) -> bulk.BulkReplay:
    deadline = time.monotonic() + timeout
    while True:
        progress = bulk.bulk_replay_progress(bridge, replay_id)
        if progress.finished or time.monotonic() > deadline:
            return progress
        time.sleep(0.05)


def test_bulk_replay_runs_in_the_background_with_progress(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    dead = [hook(client, 600 + n, route="zap-once").get_json()["delivery_id"] for n in range(5)]
    sandbox.state.update_config({"failure_rate": 0.0})
    ok = hook(client, 700).get_json()["delivery_id"]

    started = bulk.start_bulk_replay(bridge, [*dead, ok, "dlv_gone"])
    assert (started.total, started.id[:4]) == (7, "rpl_")
    done = wait_finished(bridge, started.id)
    assert done.finished and done.done == 7
    assert done.counts == {"canceled": 5, "skipped (succeeded)": 1, "unknown": 1}
    with_items = bulk.bulk_replay_progress(bridge, started.id, items=True)
    assert with_items.items is not None
    assert [i.delivery_id for i in with_items.items] == [*dead, ok, "dlv_gone"]
    cancels = [c for c in sandbox.calls() if c["status"] == 200]
    assert sorted(c["event_id"] for c in cancels) == [*range(600, 605), 700]  # once each
    with pytest.raises(NotFound):
        bulk.bulk_replay_progress(bridge, "rpl_unknown")


def test_a_bulk_replay_nobody_runs_is_taken_over(
    client: FlaskClient, bridge: Bridge, sandbox: Any
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    for n in range(3):
        hook(client, 600 + n, route="zap-once")
    sandbox.state.update_config({"failure_rate": 0.0})
    started = bulk.start_bulk_replay(bridge, query=DeliveryQuery(status="dead"), background=False)
    assert (started.total, started.done) == (3, 0)
    # A holder that died: its lease has run out.
    assert bridge.ledger.replays.claim(started.id, "web gone:1", lease=-1)
    assert bulk.resume_stalled(bridge, "worker here:2") == 1
    done = bulk.bulk_replay_progress(bridge, started.id)
    assert done.finished and done.counts == {"canceled": 3}
    attempts = console.delivery_detail(bridge, _any_dead_id(bridge)).attempts
    assert attempts[-1].role == "worker"


def _any_dead_id(bridge: Bridge) -> str:
    page = admin.list_deliveries(bridge.ledger, DeliveryQuery(route="zap-once", limit=1))
    return page.items[0].id


# -- retention and schema ---------------------------------------------------------------------


def test_purge_removes_requests_and_replays_with_their_deliveries(
    client: FlaskClient, bridge: Bridge
) -> None:
    from bridge.delivery.maintenance import purge

    bridge.ledger.links.put("cy@example.com", 12, 901)
    bridge.ledger.links.put("cy@example.com", 12, 902)
    client.post(
        "/hooks/by-email",
        json={"email": "cy@example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    kept = client.post("/hooks/zap-ack", json={"calendar_id": 1, "event_id": 2}, headers=ZAP)
    bulk.start_bulk_replay(bridge, ["dlv_x"], background=False)
    assert len(stored_requests(bridge.ledger)) == 2
    # Everything counts as old; the queued delivery is not final and stays, with its request.
    assert purge(bridge.ledger, keep_days=-1) == 2
    [left] = stored_requests(bridge.ledger)
    kept_delivery = bridge.ledger.deliveries.get(kept.get_json()["delivery_id"])
    assert kept_delivery is not None and left.id == kept_delivery.request_id
    with bridge.ledger.db.read() as conn:
        for table in (tables.bulk_replays, tables.bulk_replay_items):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_the_migrations_build_exactly_the_tables_the_code_declares(ledger: Ledger) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with ledger.db.read() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": tables.VERSION_TABLE, "compare_type": False}
        )
        differences = compare_metadata(context, tables.metadata)
    assert differences == []
