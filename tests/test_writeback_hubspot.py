"""`hubspot-note` against the HubSpot fake: the exact request, auth failures, 429 with
Retry-After, and the uncertain attempt with and without the note already written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from bridge.delivery.service import Bridge
from bridge.sandbox.vendors import HubSpotFake
from bridge.testing import wsgi_server
from tests.test_alerts import Receiver
from tests.writeback_helpers import drain, jobs, post, route_yaml, runner

TOKEN = "pat-na1-sandbox-hubspot"


@pytest.fixture
def hubspot() -> Iterator[HubSpotFake]:
    with HubSpotFake(token=TOKEN) as fake:
        yield fake


def entry(fake: HubSpotFake, **extra: Any) -> dict[str, Any]:
    return {
        "to": "hubspot-note",
        "base_url": fake.base_url,
        "token_env": "HUBSPOT_TOKEN",
        "object": "deal",
        "record": "{{ payload.deal_id }}",
        "text": "Meeting {{ result.event_id }} canceled ({{ result.outcome }})",
        **extra,
    }


@pytest.fixture
def app(make_app: Callable[..., Flask], hubspot: HubSpotFake) -> Flask:
    return make_app(route_yaml(entry(hubspot)), HUBSPOT_TOKEN=TOKEN)


def test_the_note_request_is_exactly_hubspots(app: Flask, hubspot: HubSpotFake) -> None:
    answer = post(app, 301, deal_id="9001")
    delivery_id = answer["delivery_id"]
    job = drain(runner(app), app, delivery_id)
    [request] = hubspot.requests()
    assert (request.method, request.path) == ("POST", "/crm/v3/objects/notes")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    timestamp = body["properties"].pop("hs_timestamp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp)
    assert body == {
        "properties": {"hs_note_body": f"Meeting 301 canceled (canceled) [{delivery_id}]"},
        "associations": [
            {
                "to": {"id": "9001"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
            }
        ],
    }
    [note] = hubspot.records()
    assert (job.status, job.created_id, job.attempts) == ("succeeded", note["id"], 1)


@pytest.mark.parametrize("token", ["pat-wrong", "pat-na1-sandbox-noscope"])
def test_a_refused_token_is_dead_after_the_routes_attempts(
    make_app: Callable[..., Flask], hubspot: HubSpotFake, token: str
) -> None:
    app = make_app(route_yaml(entry(hubspot), max_attempts=2), HUBSPOT_TOKEN=token)
    answer = post(app, 302, deal_id="9002")
    assert answer["outcome"] == "canceled"  # the sender's answer does not wait on HubSpot
    job = drain(runner(app), app, answer["delivery_id"])
    assert (job.status, job.attempts, job.created_id) == ("dead", 2, None)
    assert job.last_error is not None and job.last_error.startswith(
        "HTTP 401" if token == "pat-wrong" else "HTTP 403"
    )
    assert (
        [r.status for r in hubspot.requests()] == [401, 401]
        if token == "pat-wrong"
        else [
            403,
            403,
        ]
    )
    assert hubspot.records() == []


def test_a_429_pauses_the_host_for_retry_after_then_writes_once(
    app: Flask, hubspot: HubSpotFake
) -> None:
    hubspot.modes.throttle(1, retry_after=1)
    answer = post(app, 303, deal_id="9003")
    run = runner(app)
    assert run.run_once()
    [job] = jobs(app, answer["delivery_id"])
    assert job.status == "failed" and job.last_error is not None
    assert job.last_error.startswith("HTTP 429")
    assert job.next_attempt_at is not None
    first = hubspot.requests()[0].at
    job = drain(run, app, answer["delivery_id"])
    assert job.status == "succeeded"
    statuses = [r.status for r in hubspot.requests() if r.path == "/crm/v3/objects/notes"]
    assert statuses[0] == 429 and statuses.count(201) == 1
    # The retry waited out Retry-After (1 s), not just the route's backoff.
    assert hubspot.requests()[1].at - first >= 1.0
    assert len(hubspot.records()) == 1


def test_an_uncertain_attempt_without_the_note_looks_then_writes(
    app: Flask, hubspot: HubSpotFake
) -> None:
    hubspot.modes.fail(1, status=503)
    answer = post(app, 304, deal_id="9004")
    job = drain(runner(app), app, answer["delivery_id"])
    seen = [(r.path, r.status) for r in hubspot.requests()]
    assert seen[0] == ("/crm/v3/objects/notes", 503)
    # Under load a call may also time out (1 s here): then it is simply looked for again.
    assert seen[1][0] == "/crm/v3/objects/notes/search"
    assert [s for p, s in seen if p == "/crm/v3/objects/notes"].count(201) == 1
    search = next(r.json for r in hubspot.requests() if r.path.endswith("/search"))
    filters = search["filterGroups"][0]["filters"]
    assert {"propertyName": "associations.deal", "operator": "EQ", "value": "9004"} in filters
    [note] = hubspot.records()
    assert (job.status, job.created_id, job.attempts) == ("succeeded", note["id"], 2)


@pytest.mark.parametrize("mode", ["write_then_drop", "write_then_fail", "slow"])
def test_an_uncertain_attempt_that_wrote_finds_its_note_and_writes_none(
    app: Flask, hubspot: HubSpotFake, mode: str
) -> None:
    if mode == "slow":
        hubspot.modes.slow(2.5)  # past the runner's 1 s read timeout; the note is stored
    else:
        getattr(hubspot.modes, mode)()
    answer = post(app, 305, deal_id="9005")
    job = drain(runner(app), app, answer["delivery_id"])
    [note] = hubspot.records()
    assert note["properties"]["hs_note_body"].endswith(f"[{answer['delivery_id']}]")
    assert (job.status, job.created_id) == ("succeeded", note["id"])
    paths = [r.path for r in hubspot.requests()]
    # One write; then only look-ups (more than one if a look-up itself timed out under load).
    assert paths[0] == "/crm/v3/objects/notes" and paths.count("/crm/v3/objects/notes") == 1
    assert "/crm/v3/objects/notes/search" in paths


@pytest.fixture
def alert_receiver() -> Iterator[tuple[Receiver, str]]:
    found = Receiver()
    with wsgi_server(found) as url:
        yield found, url + "/alerts"


def test_a_refused_token_alerts_once_as_writeback_auth(
    make_app: Callable[..., Flask], hubspot: HubSpotFake, alert_receiver: tuple[Receiver, str]
) -> None:
    got, url = alert_receiver
    app = make_app(
        route_yaml(entry(hubspot), max_attempts=2),
        HUBSPOT_TOKEN="pat-wrong",
        BRIDGE_ALERT_URL=url,
        BRIDGE_PUBLIC_URL="https://bridge.example.com",
    )
    answer = post(app, 307, deal_id="9007")
    bridge: Bridge = app.extensions["bridge"]
    run = runner(app)
    run.alerts = bridge.dispatcher.alerts
    job = drain(run, app, answer["delivery_id"])
    assert (job.status, job.attempts) == ("dead", 2)
    assert run.alerts is not None and run.alerts.flush()
    # Two refusals within the window: one message, naming the kind; the cancel was not held.
    assert [(p["kind"], p["count"], p["url"]) for p in got.posts] == [
        ("writeback_auth", 1, "https://bridge.example.com/console/deliveries")
    ]
    assert "pat-wrong" not in json.dumps(got.posts)
    assert answer["outcome"] == "canceled"
