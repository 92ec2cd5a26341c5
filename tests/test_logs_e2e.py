"""The logs of a whole scenario, as the Procfile runs it (gunicorn with config/gunicorn.conf.py,
a worker process, the sandbox): every line either process writes is a JSON object with time,
level and pid, gunicorn's own and its access log included; a webhook is found by its request
id from the sender's answer to its worker attempt; no configured secret appears anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.ledger import Ledger
from bridge.testing import GunicornServer
from tests.conftest import ZAP_TOKEN, bridge_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "adm-e2e-5d1c7a9f3b"
AUTH = {"X-Bridge-Token": ZAP_TOKEN}
ROUTE_TOKEN_NEXT = "tok-next-8e2f4a6c"


def json_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text.strip(), f"{path.name} is empty"
    lines = []
    for line in text.splitlines():
        data = json.loads(line)  # every line, not only the bridge's
        assert isinstance(data, dict), line
        assert {"time", "level", "pid", "message"} <= set(data), line
        lines.append(data)
    return lines


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_scenarios_logs_are_json_lines_that_follow_a_request_and_hold_no_secret(
    sandbox: Any, tmp_path: Path
) -> None:
    env = {
        **bridge_env(sandbox, tmp_path),
        "ZAP_TOKEN_NEXT": ROUTE_TOKEN_NEXT,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    with ExitStack() as stack:
        server = stack.enter_context(
            GunicornServer(env, log_path=web_log, config=ROOT / "config/gunicorn.conf.py")
        )
        with open(worker_log, "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-c", "from bridge.cli import main; main()", "worker"],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        stack.callback(worker.wait, 15)
        stack.callback(worker.send_signal, signal.SIGTERM)
        ledger = Ledger(env["DATABASE_URL"])
        stack.callback(ledger.dispose)
        wait_for(lambda: ledger.coordination.workers_alive() > 0, 15, "the worker")

        url = server.url
        hook = f"{url}/hooks/zap-ack"
        queued = requests.post(
            hook,
            json={"calendar_id": 4, "event_id": 40},
            headers={**AUTH, "X-Request-Id": "ticket-4711"},
            timeout=10,
        )
        assert queued.status_code == 202 and queued.headers["X-Request-Id"] == "ticket-4711"
        delivery_id = queued.json()["delivery_id"]
        sync = requests.post(
            f"{url}/hooks/zap", json={"calendar_id": 4, "event_id": 41}, headers=AUTH, timeout=10
        )
        assert sync.status_code == 200
        # Refused ones, credentials where they do not belong, a forged line in the path.
        assert (
            requests.post(
                hook, json={"calendar_id": 4, "event_id": 42}, headers={"X-Bridge-Token": "nope"}
            ).status_code
            == 401
        )
        assert (
            requests.post(
                f"{hook}?token={ZAP_TOKEN}&admin={ADMIN_TOKEN}", json={}, timeout=10
            ).status_code
            == 401
        )
        assert requests.post(f"{url}/hooks/x%0D%0Aforged", json={}, timeout=10).status_code == 404
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        detail = requests.get(f"{url}/admin/deliveries/{delivery_id}", headers=admin, timeout=10)
        assert detail.json()["request_id"] == "ticket-4711"
        wait_for(
            lambda: (ledger.deliveries.get(delivery_id) or detail).status == "succeeded",  # type: ignore[union-attr]
            15,
            "the worker's delivery",
        )
        requests.get(f"{url}/metrics", timeout=10)

    web, work = json_lines(web_log), json_lines(worker_log)
    # gunicorn's own lines and its access log, in the same format.
    assert any(line["logger"] == "gunicorn.error" for line in web)
    access = [line for line in web if line["logger"] == "gunicorn.access"]
    assert any(line.get("request_id") == "ticket-4711" and line["status"] == 202 for line in access)
    # The webhook's line names its delivery; the worker's call carries the webhook's id.
    [answered] = [line for line in web if line.get("request_id") == "ticket-4711"
                  and line["logger"] == "bridge.web.ops"]  # fmt: skip
    assert answered["delivery_ids"] == [delivery_id] and answered["outcome"] == "queued"
    [call] = [line for line in work if line.get("delivery_id") == delivery_id]
    assert call["request_id"] == "ticket-4711" and call["meetbit_status"] == 200
    assert call["outcome"] == "canceled" and call["process_kind"] == "worker"
    assert any(h["X-Request-Id"] == "ticket-4711" for h in sandbox_headers(sandbox))
    refused = [line for line in web if line.get("status") == 401 and "route" in line]
    assert {line["error_kind"] for line in refused} == {"bad_credentials", "missing_header"}
    # No secret in either log, in any form the scenario could have put it.
    everything = web_log.read_text() + worker_log.read_text()
    secrets = {ZAP_TOKEN, ROUTE_TOKEN_NEXT, ADMIN_TOKEN, sandbox.config.key_secret}
    assert {s for s in secrets if s in everything} == set()
    assert "forged" not in everything.replace("x%0D%0Aforged", "")


def sandbox_headers(sandbox: Any) -> list[dict[str, Any]]:
    response = requests.get(f"{sandbox.url}/_sandbox/headers", timeout=5)
    seen: list[dict[str, Any]] = response.json()
    return seen
