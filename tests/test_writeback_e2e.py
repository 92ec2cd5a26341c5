"""Write-back under real processes and real load, against the HubSpot fake: SIGKILL of the
worker right after HubSpot stored the note and before the ledger recorded it; a sender that
fires the route again after every note (no loop); a burst of 300 deal-lost webhooks against
HubSpot's 100 requests per 10 s."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from bridge.delivery.service import Bridge
from bridge.sandbox.vendors import HubSpotFake
from bridge.testing import wsgi_server
from tests.conftest import ZAP_TOKEN, bridge_env
from tests.test_flow_e2e import kill, start_worker, wait_for
from tests.writeback_helpers import jobs, post, route_yaml, runner

pytestmark = pytest.mark.slow

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
        "record": "{{ payload.deal_id }}",
        "text": "Meeting {{ result.event_id }}: {{ result.outcome }}",
        **extra,
    }


def test_sigkill_between_hubspots_write_and_the_ledger_leaves_exactly_one_note(
    make_app: Callable[..., Flask], hubspot: HubSpotFake, sandbox: Any, tmp_path: Path
) -> None:
    yaml_text = route_yaml(entry(hubspot))
    app = make_app(yaml_text, HUBSPOT_TOKEN=TOKEN)
    answer = post(app, 401, deal_id="7001")
    delivery_id = answer["delivery_id"]
    env = {
        **bridge_env(sandbox, tmp_path, yaml_text),
        "HUBSPOT_TOKEN": TOKEN,
        "BRIDGE_WRITE_BACK_TIMEOUT": "1,3",
    }
    worker = start_worker(env, tmp_path / "worker.log")
    killed = threading.Event()

    def kill_worker(_note: dict[str, Any]) -> None:
        # HubSpot has stored the note; its answer is held back (slow mode) while this runs.
        os.kill(worker.pid, signal.SIGKILL)
        killed.set()

    hubspot.modes.slow(8.0)
    hubspot.on_write(kill_worker, limit=1)
    try:
        assert killed.wait(30), "the worker never wrote the note"
        worker.wait(timeout=10)
        [job] = jobs(app, delivery_id)
        assert (job.status, job.sent, job.created_id) == ("in_flight", True, None)
        assert len(hubspot.records()) == 1
        worker = start_worker(env, tmp_path / "worker.log")
        wait_for(
            lambda: jobs(app, delivery_id)[0].status == "succeeded",
            40,
            "the restarted worker to finish the write-back",
        )
    finally:
        kill(worker)
    [note] = hubspot.records()
    [job] = jobs(app, delivery_id)
    assert job.created_id == note["id"]
    writes = [r for r in hubspot.requests() if r.path == "/crm/v3/objects/notes"]
    assert len(writes) == 1  # found by its marker, not written again
    assert any(r.path.endswith("/search") for r in hubspot.requests())


def test_a_sender_firing_again_after_every_note_gets_one_cancel_and_one_note_per_event(
    make_app: Callable[..., Flask], hubspot: HubSpotFake, sandbox: Any
) -> None:
    app = make_app(
        route_yaml(entry(hubspot, on=["canceled", "already_canceled"])), HUBSPOT_TOKEN=TOKEN
    )
    fired: list[int] = []
    with wsgi_server(app) as url:

        def fire_again(note: dict[str, Any]) -> None:
            # Like Pipedrive's `updated.deal`: the record changed, so the sender fires again
            # (a new delivery, the same deal and meeting).
            [association] = note["associations"]["deals"]["results"]
            deal = association["id"]
            fired.append(int(deal))
            requests.post(
                f"{url}/hooks/deals",
                json={"event_id": int(deal) - 7000, "deal_id": deal, "again": len(fired)},
                headers={"X-Bridge-Token": ZAP_TOKEN},
                timeout=10,
            ).raise_for_status()

        hubspot.on_write(fire_again, limit=20)
        first = [post(app, n, deal_id=str(7000 + n)) for n in (11, 12, 13)]
        run = runner(app)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hubspot.join_triggers()
            if not run.run_once() and len(fired) >= 3:
                hubspot.join_triggers()
                if not run.run_once():
                    break
    assert [a["outcome"] for a in first] == ["canceled"] * 3
    notes = hubspot.records()
    assert len(notes) == 3
    assert hubspot.triggered == 3  # it stopped by itself: no second note, no third webhook
    assert sorted(c["event_id"] for c in sandbox.calls()) == [11, 12, 13]
    bridge: Bridge = app.extensions["bridge"]
    again = [
        d
        for d in bridge.ledger.queries.deliveries(route="deals", limit=50)[0]
        if d.outcome == "already_canceled"
    ]
    assert len(again) == 3  # each re-fire was answered from the ledger


def test_a_burst_of_300_with_hubspot_write_back_stays_under_hubspots_limit(
    make_app: Callable[..., Flask], hubspot: HubSpotFake, sandbox: Any
) -> None:
    app = make_app(route_yaml(entry(hubspot)), HUBSPOT_TOKEN=TOKEN)
    run = runner(app)
    side = threading.Thread(target=run.run, kwargs={"idle": 0.05})
    side.start()
    try:
        answers = [post(app, 1000 + n, deal_id=str(50_000 + n)) for n in range(300)]
        # At 100 per 10 s the notes take about 32 s; the bound only keeps a hang from lasting.
        hubspot.wait_for_records(300, timeout=180)
    finally:
        run.stop.set()
        side.join()
    assert [a["outcome"] for a in answers] == ["canceled"] * 300
    assert len(sandbox.calls()) == 300
    notes = hubspot.records()
    bodies = [n["properties"]["hs_note_body"] for n in notes]
    assert len(notes) == 300 and len(set(bodies)) == 300  # 300 notes, no duplicate
    assert sum(1 for r in hubspot.requests() if r.status == 429) == 0
    assert hubspot.max_in_window(10.0) <= 100
    # How close to HubSpot's rate this runs is measured by tests/perf/bench_drain.py, not here.
