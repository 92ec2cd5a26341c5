"""The MeetBit sandbox answers like MeetBit's documentation says, and its webhooks verify."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request, Response

import bridge.sandbox
from bridge.demo.signers import meetbit
from bridge.sandbox import (
    SandboxConfig,
    SandboxServer,
    create_sandbox_app,
    generate_event,
    send_meetbit_webhook,
    sign_meetbit_webhook,
)
from bridge.testing import free_port, wsgi_server

KEYS = {"X-Access-Key-Id": "MBP-sandbox", "X-Access-Key-Secret": "sandbox-secret"}
PATH = "/api/public/v2.0/calendars/{}/events/{}/cancel"
TOO_LONG = "The cancel note field must not be greater than 255 characters."


class Receiver:
    """A webhook endpoint that records what it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self.arrived:
            self.received.append((dict(request.headers), request.get_data()))
            self.arrived.notify_all()
        return Response("ok")(environ, start_response)

    def wait_for(self, count: int, timeout: float = 3.0) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


def expected_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The signature of what was sent, with the id and timestamp it was sent with."""
    return meetbit(secret, headers["X-Webhook-Id"], headers["X-Webhook-Timestamp"], body)


@pytest.fixture
def client() -> FlaskClient:
    return create_sandbox_app(SandboxConfig(rate_limit=0)).test_client()


def cancel(
    client: FlaskClient, cal: int, evt: int, body: Any = None, **headers: str
) -> TestResponse:
    payload = {"cancel_note": "Deal lost"} if body is None else body
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        PATH.format(cal, evt),
        data=data,
        headers={**KEYS, **headers},
        content_type="application/json",
    )


def test_success_envelope_and_full_event(client: FlaskClient) -> None:
    response = cancel(client, 12, 345)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["message"] == "Event canceled."
    event = body["data"]
    assert event["cancel_note"] == "Deal lost"
    assert event["canceled_by_type"] == "App\\Models\\Tenant\\User"
    assert event["deleted_at"].endswith("Z") and event["start"].endswith("Z")
    assert set(event) >= {
        "id", "calendar_id", "title", "body", "start", "end", "attendees", "location",
        "cancel_note", "canceled_by_id", "canceled_by_type", "created_at", "updated_at",
        "deleted_at", "public_id", "provider_event_id", "customer_id", "meeting_link_id",
        "online_conference",
    }  # fmt: skip
    assert set(event["attendees"][0]) == {
        "email", "name", "is_organizer", "customer_id", "calendar_id", "status",
    }  # fmt: skip


def test_events_are_deterministic(client: FlaskClient) -> None:
    assert generate_event(4, 77) == generate_event(4, 77)
    assert generate_event(4, 77)["public_id"] != generate_event(4, 78)["public_id"]
    first = cancel(client, 4, 77).get_json()["data"]
    other = create_sandbox_app(SandboxConfig(rate_limit=0)).test_client()
    second = cancel(other, 4, 77).get_json()["data"]
    for changed in ("updated_at", "deleted_at"):
        first.pop(changed), second.pop(changed)
    assert first == second


def test_missing_and_recanceled_events_are_404(client: FlaskClient) -> None:
    missing, ok, again = cancel(client, 2, 900_000), cancel(client, 2, 5), cancel(client, 2, 5)
    assert ok.status_code == 200
    for response in (missing, again):
        assert response.status_code == 404
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == "Resource object does not exist."


def test_keys(client: FlaskClient) -> None:
    for headers in ({"X-Access-Key-Secret": ""}, {"X-Access-Key-Id": "MBP-other"}):
        response = cancel(client, 1, 2, **headers)
        assert response.status_code == 401
        assert response.mimetype == "text/plain"
        assert response.get_data(as_text=True) == "Invalid or missing access key."
    bare = client.post(PATH.format(1, 2), json={"cancel_note": "x"})
    assert bare.status_code == 401
    denied = {"X-Access-Key-Id": "MBP-denied", "X-Access-Key-Secret": "denied-secret"}
    response = cancel(client, 1, 2, **denied)
    assert (response.status_code, response.get_data(as_text=True)) == (401, "Access Denied.")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "The cancel note field is required."),
        ({"cancel_note": ""}, "The cancel note field is required."),
        ({"cancel_note": "   "}, "The cancel note field is required."),
        ({"cancel_note": None}, "The cancel note field is required."),
        ({"cancel_note": 42}, "The cancel note field must be a string."),
        ({"cancel_note": "x" * 256}, TOO_LONG),
        (b"cancel_note=hello", "The cancel note field is required."),
    ],
    ids=["missing", "empty", "blank", "null", "number", "too-long", "not-json"],
)  # fmt: skip
def test_note_validation_shape(client: FlaskClient, body: Any, error: str) -> None:
    response = cancel(client, 1, 2, body)
    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert response.get_json() == {"message": error, "errors": {"cancel_note": [error]}}
    assert cancel(client, 1, 2, {"cancel_note": "x" * 255}).status_code == 200


def test_burst_is_limited_with_headers() -> None:
    # Sliding: ten calls at once may straddle a calendar second, which would refill the quota.
    with SandboxServer(SandboxConfig(window="sliding")) as sandbox:
        app = sandbox.app.test_client()
        responses = [cancel(app, 1, i) for i in range(1, 11)]
        stats = sandbox.stats()
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 5
    assert [r.headers["RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    for response in responses:
        assert response.headers["RateLimit-Limit"] == "5"
        assert int(response.headers["RateLimit-Reset"]) >= 1
    limited = responses[5]
    assert limited.mimetype == "text/plain"
    assert limited.get_data(as_text=True) == "Too many requests."
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert "Retry-After" not in responses[0].headers
    assert stats["calls"] == 10
    assert stats["by_status"] == {"200": 5, "429": 5}
    assert stats["rate_limited"] == 5
    assert stats["max_calls_in_any_second"] == 10
    assert stats["cancels"] == {f"1/{i}": 1 for i in range(1, 6)}


def test_invalid_requests_count_and_hammering_extends_the_lockout() -> None:
    app = create_sandbox_app(SandboxConfig(rate_limit=2, retry_after=1, window="sliding"))
    client = app.test_client()
    assert cancel(client, 1, 2, {}).status_code == 400
    assert cancel(client, 1, 3, {"cancel_note": "x"}).status_code == 200
    assert cancel(client, 1, 4).status_code == 429  # the 400 used up quota too
    time.sleep(0.6)
    assert cancel(client, 1, 4).status_code == 429  # retried too early: lock-out extended
    time.sleep(0.6)
    # The first lock-out (1 s) is over, the extended one is not.
    assert cancel(client, 1, 4).status_code == 429
    # Another key id has its own quota.
    other = {"X-Access-Key-Id": "MBP-denied", "X-Access-Key-Secret": "denied-secret"}
    assert cancel(client, 1, 4, **other).status_code == 401


def test_max_calls_in_any_second_slides_over_arrivals() -> None:
    with SandboxServer(SandboxConfig(rate_limit=0)) as sandbox:
        client = sandbox.app.test_client()
        for i in range(3):
            cancel(client, 1, i + 1)
        time.sleep(1.01)
        for i in range(2):
            cancel(client, 1, i + 10)
        assert sandbox.stats()["max_calls_in_any_second"] == 3
        calls = sandbox.calls()
    assert [c["status"] for c in calls] == [200] * 5
    assert set(calls[0]) == {"at", "calendar_id", "event_id", "status", "key_id"}
    assert calls[0]["key_id"] == "MBP-sandbox"


def test_failures_are_reproducible_with_a_seed() -> None:
    def run() -> list[int]:
        client = create_sandbox_app(
            SandboxConfig(rate_limit=0, failure_rate=0.5, seed=7)
        ).test_client()
        return [cancel(client, 1, i).status_code for i in range(1, 21)]

    first = run()
    assert first == run()
    assert set(first) == {200, 500}


def test_introspection_over_http(client: FlaskClient) -> None:
    cancel(client, 1, 2)
    assert len(client.get("/_sandbox/calls").get_json()) == 1
    config = client.patch("/_sandbox/config", json={"failure_rate": 1, "seed": 3}).get_json()
    assert config["failure_rate"] == 1.0
    assert config["key_secret"] == "***"
    assert cancel(client, 1, 3).status_code == 500
    bad = client.patch("/_sandbox/config", json={"failure_rate": 2, "warp": 9})
    assert bad.status_code == 400
    assert set(bad.get_json()["errors"]) == {"failure_rate", "warp"}
    assert client.post("/_sandbox/reset").status_code == 200
    stats = client.get("/_sandbox/stats").get_json()
    assert stats == {
        "calls": 0,
        "by_status": {},
        "max_calls_in_any_second": 0,
        "cancels": {},
        "rate_limited": 0,
        "per_second": {},
        "max_in_calendar_second": {},
        "tenant_max_in_calendar_second": 0,
        "other_app": {"calls": 0, "rate_limited": 0},
    }
    client.patch("/_sandbox/config", json={"failure_rate": 0})
    assert cancel(client, 1, 2).status_code == 200  # reset forgot the cancel


def test_signature_matches_an_independent_hmac() -> None:
    body = b'{"event":"meeting_links.scheduled","data":{"id":1234}}'
    webhook_id, timestamp = "3f0e2f9b-8d44-4a7d-9c2a-1f5b2e7d9a6c", "2024-08-22T01:04:05Z"
    digest = hmac.new(
        b"whsecret", f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    assert sign_meetbit_webhook("whsecret", webhook_id, timestamp, body) == digest.hex()
    assert (
        sign_meetbit_webhook("whsecret", webhook_id, timestamp, body, encoding="base64")
        == base64.b64encode(digest).decode()
    )
    with pytest.raises(ValueError):
        sign_meetbit_webhook("whsecret", webhook_id, timestamp, body, encoding="hex64")


def test_signed_webhook_round_trip() -> None:
    receiver = Receiver()
    with wsgi_server(receiver) as url:
        status = send_meetbit_webhook(
            url, "whsecret", "events.deleted", {"id": 5, "calendar_id": 6}
        )
    assert status == 200
    ((headers, body),) = receiver.received
    assert body == b'{"event":"events.deleted","data":{"id":5,"calendar_id":6}}'
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-Timestamp"].endswith("Z")
    assert headers["X-Webhook-Signature"] == expected_signature("whsecret", headers, body)


def test_schedule_notifies_and_cancel_echoes_events_deleted() -> None:
    receiver = Receiver()
    with wsgi_server(receiver) as url:
        config = SandboxConfig(
            rate_limit=0, notify_url=url + "/meetbit/webhooks", notify_secret="s"
        )
        with SandboxServer(config) as sandbox:
            client = sandbox.app.test_client()
            answer = client.post(
                "/_sandbox/schedule", json={"email": "ada@example.com", "name": "Ada"}
            )
            assert answer.status_code == 201
            ids = answer.get_json()
            assert ids["notified"] == 200
            cal, evt = ids["calendar_id"], ids["event_id"]
            ((headers, body),) = receiver.received  # sent before the answer
            assert headers["X-Webhook-Signature"] == expected_signature("s", headers, body)
            assert json.loads(body) == {
                "event": "meeting_links.scheduled",
                "data": {
                    "id": ids["meeting_link_id"],
                    "event_id": evt,
                    "calendar_id": cal,
                    "email": "ada@example.com",
                    "name": "Ada",
                },
            }
            event = cancel(client, cal, evt).get_json()["data"]
            assert {"email": "ada@example.com", "name": "Ada"}.items() <= event["attendees"][
                1
            ].items()
            received = receiver.wait_for(2)
    headers, body = received[1]
    assert json.loads(body) == {"event": "events.deleted", "data": {"id": evt, "calendar_id": cal}}
    assert headers["X-Webhook-Signature"] == expected_signature("s", headers, body)


def test_schedule_rejects_bad_input(client: FlaskClient) -> None:
    response = client.post("/_sandbox/schedule", json={"email": "not-an-email"})
    assert response.status_code == 400
    assert "email" in response.get_json()["errors"]


def test_serve_stops_cleanly_on_sigterm() -> None:
    code = "from bridge.sandbox import SandboxConfig, serve; serve(SandboxConfig(), '127.0.0.1', 0)"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("MeetBit sandbox listening on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "MeetBit sandbox stopped." in err


def test_schedule_reports_an_unreachable_receiver() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SandboxConfig(notify_url=f"http://127.0.0.1:{port}/hooks", notify_secret="s")
    client = create_sandbox_app(config).test_client()
    answer = client.post("/_sandbox/schedule", json={"email": "ada@example.com", "event_id": 9})
    assert answer.status_code == 201
    assert answer.get_json()["notified"] is None
    assert answer.get_json()["notify_error"] == "ConnectionError"
    # The event exists even though nobody heard about it.
    assert cancel(client, 1, 9).status_code == 200


def test_reset_returns_the_server_to_a_fresh_state() -> None:
    config = SandboxConfig(rate_limit=2, seed=11)
    with SandboxServer(config) as sandbox:
        client = sandbox.app.test_client()
        fresh_dice = [cancel(client, 1, i).status_code for i in (1, 2, 3)]
        sandbox.reset()
        # Cancels, calls, counters and the limiter's window are forgotten ...
        booked = client.post("/_sandbox/schedule", json={"email": "ada@example.com"})
        assert booked.status_code == 201
        assert [cancel(client, 1, i).status_code for i in (1, 2)] == [200, 200]
        assert cancel(client, 1, 3).status_code == 429
        config.failure_rate = 1.0
        client.patch("/_sandbox/config", json={"rate_limit": 0, "seed": 12})
        assert cancel(client, 1, 4).status_code == 500
        config.latency = 5.0
        sandbox.reset()
        stats = sandbox.stats()
        assert (stats["calls"], stats["rate_limited"], stats["cancels"]) == (0, 0, {})
        assert sandbox.calls() == []
        # ... every knob is back to what the server was created with (the same object) ...
        assert sandbox.config is config
        assert config == SandboxConfig(rate_limit=2, seed=11)
        assert sandbox.state.canceled == {}
        assert sandbox.state.events.scheduled == {}
        # ... and the dice start over from the seed.
        assert [cancel(client, 1, i).status_code for i in (1, 2, 3)] == fresh_dice
        # The booking was forgotten too: the same email gets the first id again.
        again = client.post("/_sandbox/schedule", json={"email": "ada@example.com"}).get_json()
        assert again["event_id"] == booked.get_json()["event_id"]


def test_reset_lets_a_cancel_in_progress_finish_first() -> None:
    with SandboxServer(SandboxConfig(rate_limit=0)) as sandbox:
        client = sandbox.app.test_client()
        sandbox.config.latency = 30
        slow = threading.Thread(target=cancel, args=(client, 5, 6))
        slow.start()
        deadline = time.monotonic() + 5
        while not sandbox.calls() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        sandbox.reset()  # cuts the 30 s latency short and waits for the answer
        assert time.monotonic() - started < 5
        slow.join(5)
        assert not slow.is_alive()
        # What the slow cancel did happened before the reset, not in the next test's time.
        assert sandbox.calls() == [] and sandbox.state.canceled == {}
        assert sandbox.config.latency == 0
        started = time.monotonic()
        assert cancel(client, 5, 6).status_code == 200
        assert time.monotonic() - started < 5


def test_the_sandbox_imports_nothing_from_the_bridge() -> None:
    package = Path(bridge.sandbox.__file__).parent
    for module in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module.name}: use absolute imports"
                names = [node.module or ""]
            for name in names:
                if name == "bridge" or name.startswith("bridge."):
                    assert name.startswith("bridge.sandbox"), f"{module.name} imports {name}"
    # And at run time: importing it loads no other part of the bridge.
    code = (
        "import sys, bridge.sandbox; "
        "print(sorted(m for m in sys.modules if m.startswith('bridge.')"
        " and not m.startswith('bridge.sandbox')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_the_cli_prints_the_sandbox_banner_once() -> None:
    port = free_port()
    code = "from bridge.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "sandbox", "--port", str(port), "--rate-limit", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = []
        for line in process.stdout:
            banner.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    text = "".join(banner) + out
    assert process.returncode == 0, err
    assert text.count("MeetBit sandbox") == 1, text
    assert f"MeetBit sandbox listening on http://127.0.0.1:{port}\n" in text
    assert f"MEETBIT_BASE_URL=http://127.0.0.1:{port}" in text
    assert "rate limit 7/s" in text
