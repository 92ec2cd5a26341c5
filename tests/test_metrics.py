"""`GET /metrics`: hook counters, MeetBit call metrics, ledger gauges, and the sum over several
gunicorn workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from bridge.delivery import metrics
from tests.conftest import ZAP_TOKEN, bridge_env

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"X-Bridge-Token": ZAP_TOKEN}
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"
# A worker imports the whole app before it accepts: ~1.5 s idle, several on a loaded machine.
BOOT_TIMEOUT = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


WEBHOOKS = "meetbit_bridge_webhooks_total"
REJECTIONS = "meetbit_bridge_webhook_rejections_total"
CALLS = "meetbit_bridge_meetbit_calls_total"
CALL_SECONDS = "meetbit_bridge_meetbit_call_seconds_count"


def test_hooks_are_counted_by_route_status_and_reason(client: FlaskClient) -> None:
    # Counters live as long as the process, so each test reads what it added.
    before = scrape(client)
    ok = client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 345}, headers=AUTH)
    assert ok.status_code == 200 and ok.get_json()["outcome"] == "canceled"
    assert client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 346}).status_code == 401
    assert client.post("/hooks/nope", json={}).status_code == 404
    assert client.post("/hooks/wp-login.php", data="x").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    after = parse(text)

    assert delta(before, after, WEBHOOKS, route="zap", status="200") == 1
    assert delta(before, after, WEBHOOKS, route="zap", status="401") == 1
    assert delta(before, after, WEBHOOKS, route="unknown", status="404") == 2
    assert delta(before, after, REJECTIONS, route="zap", reason="missing_header") == 1
    assert delta(before, after, REJECTIONS, route="unknown", reason="not_found") == 2
    # A success is not a rejection, and probed names never become label values.
    assert total(after, REJECTIONS) - total(before, REJECTIONS) == 3
    assert "nope" not in text and "wp-login" not in text
    # The ledger gauges read this app's ledger: exactly the one delivery above.
    assert value(after, "meetbit_bridge_deliveries", status="succeeded") == 1
    assert value(after, "meetbit_bridge_deliveries", status="pending") == 0
    assert value(after, "meetbit_bridge_ledger_up") == 1
    assert value(after, "meetbit_bridge_oldest_pending_seconds") == 0


def test_non_hook_requests_are_not_counted(client: FlaskClient) -> None:
    before = scrape(client)
    client.get("/healthz")
    client.get("/nothing-here")
    after = scrape(client)
    assert {k: v for k, v in after.items() if k[0] == WEBHOOKS} == {
        k: v for k, v in before.items() if k[0] == WEBHOOKS
    }


def test_ledger_gauges_show_queue_age_and_workers(app: Flask, client: FlaskClient) -> None:
    queued = client.post("/hooks/zap-ack", json={"calendar_id": 12, "event_id": 350}, headers=AUTH)
    assert queued.status_code == 202
    time.sleep(0.05)  # so the pending delivery has a measurable age
    app.extensions["bridge"].ledger.coordination.heartbeat("worker-a")
    samples = scrape(client)
    assert value(samples, "meetbit_bridge_deliveries", status="pending") == 1
    assert value(samples, "meetbit_bridge_oldest_pending_seconds") > 0
    assert value(samples, "meetbit_bridge_workers_alive") == 1


def test_meetbit_call_metrics(client: FlaskClient) -> None:
    class Refused(Exception):
        reason = "connection_error"

    before = scrape(client)
    metrics.record_meetbit_call("ok", 0.03)
    with metrics.meetbit_call_timer():
        pass
    with pytest.raises(Refused), metrics.meetbit_call_timer():
        raise Refused
    after = scrape(client)
    assert delta(before, after, CALLS, account="default", result="ok") == 2
    assert delta(before, after, CALLS, account="default", result="connection_error") == 1
    assert delta(before, after, CALL_SECONDS) == 3
    bucket = "meetbit_bridge_meetbit_call_seconds_bucket"
    assert delta(before, after, bucket, le="0.05") == 3


def test_dispatch_records_meetbit_calls(client: FlaskClient) -> None:
    before = scrape(client)
    client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 360}, headers=AUTH)
    # Event ids from 900000 do not exist in the sandbox: MeetBit answers 404.
    missing = client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 900001}, headers=AUTH)
    assert missing.status_code == 404
    after = scrape(client)
    assert delta(before, after, CALLS, account="default", result="ok") == 1
    assert delta(before, after, CALLS, account="default", result="not_found") == 1
    assert delta(before, after, CALL_SECONDS) == 2


def test_openmetrics_when_asked(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_two_apps_in_one_process_both_scrape(make_app: Callable[..., Flask]) -> None:
    first, second = make_app().test_client(), make_app().test_client()
    assert first.post("/hooks/nope").status_code == 404
    for client in (first, second):
        assert value(scrape(client), "meetbit_bridge_ledger_up") == 1


def test_scrape_answers_while_the_ledger_is_down(make_app: Callable[..., Flask]) -> None:
    client = make_app(DATABASE_URL=UNREACHABLE_PG).test_client()
    samples = scrape(client)
    assert value(samples, "meetbit_bridge_ledger_up") == 0
    assert not any(name == "meetbit_bridge_deliveries" for name, _ in samples)


# --- several gunicorn workers ---------------------------------------------------------------


@pytest.fixture
def gunicorn(sandbox: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The bridge under gunicorn with two workers, as the Procfile runs it; yields (url, log)."""
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    env.update(bridge_env(sandbox, tmp_path))
    env.update(WEB_CONCURRENCY="2", GUNICORN_THREADS="2")
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "bridge:create_app()",
        "-c",
        "config/gunicorn.conf.py",
        "-b",
        "127.0.0.1:0",
        # The worker pid in the access log shows which worker answered.
        "--access-logformat",
        "pid=%(p)s %(m)s %(U)s %(s)s",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        url = _listening_url(proc, log)
        _wait_booted(url, log)
        yield url, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
        if match:
            return match.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail("gunicorn did not start:\n" + log.read_text())


def _wait_booted(url: str, log: Path) -> None:
    """The master binds before the workers load the app; the first request waits in the listen
    backlog until one of them has (seconds on a busy machine)."""
    try:
        ready = requests.get(url + "/readyz", timeout=BOOT_TIMEOUT)
    except requests.RequestException as exc:
        pytest.fail(f"the bridge never answered ({exc}):\n" + log.read_text())
    assert ready.status_code == 200, log.read_text()


def _pids(log: Path, path: str) -> set[str]:
    return set(re.findall(rf"pid=<(\d+)> POST {re.escape(path)} ", log.read_text()))


@pytest.mark.slow
def test_metrics_sum_over_gunicorn_workers(gunicorn: tuple[str, Path]) -> None:
    url, log = gunicorn
    sent = 0
    # New connections land on whichever booted worker accepts first; keep sending until both
    # have answered some, so the sum really spans two processes.
    deadline = time.monotonic() + BOOT_TIMEOUT
    while sent < 20 or (len(_pids(log, "/hooks/zap")) < 2 and time.monotonic() < deadline):
        assert requests.post(url + "/hooks/zap", json={}, timeout=5).status_code == 401
        sent += 1
    assert len(_pids(log, "/hooks/zap")) == 2, "one worker answered every request"

    for _ in range(6):  # each scrape may be answered by either worker
        response = requests.get(url + "/metrics", timeout=5)
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, WEBHOOKS, route="zap", status="401") == sent
        assert value(samples, REJECTIONS, route="zap", reason="missing_header") == sent
        assert value(samples, "meetbit_bridge_ledger_up") == 1


@pytest.mark.slow
def test_gunicorn_conf_prepares_and_cleans_the_metrics_directory(tmp_path: Path) -> None:
    """Unset: a fresh directory, removed on exit. Set: stale files of an earlier run wiped."""
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_99999.db").write_bytes(b"stale")
    script = (
        "import os, runpy, sys\n"
        "given = os.environ.get('PROMETHEUS_MULTIPROC_DIR')\n"
        "conf = runpy.run_path('config/gunicorn.conf.py')\n"
        "path = os.environ['PROMETHEUS_MULTIPROC_DIR']\n"
        "assert os.path.isdir(path), path\n"
        "conf['on_starting'](None)\n"
        "print(sorted(os.listdir(path)))\n"
        "conf['on_exit'](None)\n"
        "print(path == given, os.path.exists(path))\n"
    )
    base = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}

    def run(env: dict[str, str]) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    assert run(base) == ["[]", "False False"]
    assert run({**base, metrics.MULTIPROC_ENV: str(given)}) == ["[]", "True True"]
    assert list(given.iterdir()) == []
