"""Shared by the write-back tests: a generic route whose write-back goes to a vendor fake, a
signed-in webhook post, and the worker's runner driven one job at a time."""

from __future__ import annotations

import time
from typing import Any

import yaml
from flask import Flask

from bridge.delivery.service import Bridge
from bridge.delivery.write_backs import WriteBackRunner
from bridge.ledger import WriteBack
from tests.conftest import ZAP_TOKEN


def route_yaml(entry: dict[str, Any], *, max_attempts: int = 3) -> str:
    """One generic route `deals` canceling (calendar 7, payload.event_id) with `entry`."""
    document = {
        "routes": {
            "deals": {
                "preset": "generic",
                "auth": {"header": "X-Bridge-Token", "token_env": "ZAP_TOKEN"},
                "target": {"calendar_id": "7", "event_id": "{{ payload.event_id }}"},
                "note": "Deal lost",
                "max_attempts": max_attempts,
                "write_back": [entry],
            }
        }
    }
    return yaml.safe_dump(document, sort_keys=False)


def post(app: Flask, event_id: int, **fields: Any) -> Any:
    resp = app.test_client().post(
        "/hooks/deals",
        json={"event_id": event_id, **fields},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def runner(app: Flask) -> WriteBackRunner:
    bridge: Bridge = app.extensions["bridge"]
    # Tiny backoff so that a retry is due at once; a 1 s read timeout for the slow modes.
    return WriteBackRunner(
        bridge.ledger, bridge.routes, retry_backoff=(0.01, 0.02), timeout=(2.0, 1.0)
    )


def jobs(app: Flask, delivery_id: str) -> list[WriteBack]:
    bridge: Bridge = app.extensions["bridge"]
    return bridge.ledger.write_backs.for_delivery(delivery_id)


def drain(
    run: WriteBackRunner, app: Flask, delivery_id: str, *, deadline: float = 20.0
) -> WriteBack:
    """Run due jobs until the delivery's job is final (succeeded or dead); bounded."""
    end = time.monotonic() + deadline
    while True:
        [job] = jobs(app, delivery_id)
        if job.status in ("succeeded", "dead"):
            return job
        assert time.monotonic() < end, f"write-back still {job.status}: {job.last_error}"
        if not run.run_once():
            time.sleep(0.02)
