"""The lines the on-call person reads: one per webhook and per MeetBit call, with the fields to
find a delivery (request id, delivery ids, route, outcome, MeetBit status, latency, error kind);
JSON or text, one line each whatever a field holds; and the worker's calls and final-vs-retrying
failures on /metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from bridge import logs
from bridge.delivery.service import Bridge
from bridge.delivery.worker import Worker
from tests.conftest import ZAP_TOKEN
from tests.test_metrics import parse, value

AUTH = {"X-Bridge-Token": ZAP_TOKEN}
FORGED = 'x\r\n2026-01-01T00:00:00.000+00:00 INFO pid=1 bridge: admin token accepted "'


def record(message: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> Any:
    rec = logging.LogRecord("bridge.test", logging.WARNING, __file__, 1, message, args, None)
    if exc is not None:
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_time_level_pid_and_fields() -> None:
    with logs.bound(request_id="req-1"):
        rec = record("answered %s", 502, delivery_id="dlv_1", status=502)
        logs.ContextFilter().filter(rec)
    line = logs.JsonFormatter().format(rec)
    data = json.loads(line)
    assert list(data)[:5] == ["time", "level", "logger", "pid", "message"]
    assert data["time"].endswith("+00:00") and data["level"] == "WARNING"
    assert (data["message"], data["request_id"], data["delivery_id"]) == (
        "answered 502",
        "req-1",
        "dlv_1",
    )


@pytest.mark.parametrize("formatter", [logs.JsonFormatter(), logs.TextFormatter()])
def test_crlf_in_a_message_field_or_traceback_never_starts_a_line(
    formatter: logging.Formatter,
) -> None:
    try:
        raise ValueError(FORGED)
    except ValueError as exc:
        rec = record("hook %s", FORGED, exc=exc, route=FORGED, key=FORGED)
    text = formatter.format(rec)
    lines = text.splitlines()
    if isinstance(formatter, logs.JsonFormatter):
        assert len(lines) == 1 and json.loads(lines[0])["route"] == FORGED
    else:
        # The record's own line, then the traceback, every line of it indented.
        assert lines[0].count(" WARNING ") == 1 and "\\x0d\\x0a" in lines[0]
        assert all(line.startswith("    ") for line in lines[1:]) and len(lines) > 2
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_format_follows_the_variable_then_the_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.log_format({}, io.StringIO()) == "json"
    assert logs.log_format({}, Tty()) == "text"
    assert logs.log_format({"BRIDGE_LOG_FORMAT": "JSON"}, Tty()) == "json"
    assert logs.log_format({"BRIDGE_LOG_FORMAT": "text"}, io.StringIO()) == "text"


def lines_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


def test_one_line_per_webhook_and_per_meetbit_call(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    client = app.test_client()
    ok = client.post(
        "/hooks/zap",
        json={"calendar_id": 12, "event_id": 345},
        headers={**AUTH, "X-Request-Id": "req-ok"},
    )
    missing = client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 900001}, headers=AUTH)
    refused = client.post("/hooks/zap", json={"calendar_id": 12, "event_id": 1})
    assert (ok.status_code, missing.status_code, refused.status_code) == (200, 404, 401)

    hooks = lines_of(caplog, "bridge.web.ops")
    assert len(hooks) == 3
    first = hooks[0].__dict__
    assert (first["route"], first["status"], first["outcome"]) == ("zap", 200, "canceled")
    assert first["request_id"] == "req-ok" and first["error_kind"] is None
    assert first["delivery_ids"] == [ok.get_json()["delivery_id"]] and first["latency_ms"] > 0
    second, third = hooks[1].__dict__, hooks[2].__dict__
    assert (second["status"], second["outcome"], second["error_kind"]) == (
        404,
        "not_found",
        "event_not_found",
    )
    assert second["request_id"] == missing.headers["X-Request-Id"]
    assert (third["status"], third["error_kind"], third["delivery_ids"]) == (
        401,
        "missing_header",
        [],
    )

    calls = lines_of(caplog, "bridge.delivery.dispatch")
    assert [c.levelname for c in calls] == ["INFO", "WARNING"]
    done, gone = calls[0].__dict__, calls[1].__dict__
    assert (done["delivery_id"], done["meetbit_status"], done["outcome"]) == (
        ok.get_json()["delivery_id"],
        200,
        "canceled",
    )
    assert done["request_id"] == "req-ok" and done["process_kind"] == "web"
    assert (gone["meetbit_status"], gone["error_kind"], gone["outcome"]) == (
        404,
        "not_found",
        "not_found",
    )


def test_worker_lines_say_retry_dead_and_a_refused_key(
    make_app: Callable[..., Flask], sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    routes = (
        "routes:\n  ack:\n    preset: generic\n"
        "    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}"
        "\n    respond: ack\n    max_attempts: 2\n    note: Queued\n    target:\n"
        '      calendar_id: "{{ payload.calendar_id }}"\n'
        '      event_id: "{{ payload.event_id }}"\n'
    )
    app = make_app(routes, ZAP_TOKEN=ZAP_TOKEN, BRIDGE_RETRY_BACKOFF="0.01,0.01")
    bridge: Bridge = app.extensions["bridge"]
    client = app.test_client()
    queued = client.post("/hooks/ack", json={"calendar_id": 3, "event_id": 30}, headers=AUTH)
    assert queued.status_code == 202
    sandbox.state.update_config({"failure_rate": 1.0})
    worker = Worker(bridge.ledger, bridge.dispatcher, batch=1)
    assert worker.run_once() == 1
    retry = lines_of(caplog, "bridge.delivery.dispatch")[-1]
    assert retry.levelname == "WARNING" and "will retry" in retry.getMessage()
    assert retry.__dict__["request_id"] == queued.headers["X-Request-Id"]
    assert (retry.__dict__["meetbit_status"], retry.__dict__["error_kind"]) == (500, "server_error")
    samples = parse(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "meetbit_bridge_deliveries", status="retrying") == 1
    assert value(samples, "meetbit_bridge_deliveries", status="failed") == 0

    _wait_until_due(bridge, queued.get_json()["delivery_id"])
    assert worker.run_once() == 1
    dead = lines_of(caplog, "bridge.delivery.dispatch")[-1]
    assert dead.levelname == "ERROR" and "dead after 2 attempts" in dead.getMessage()
    assert dead.__dict__["delivery_status"] == "dead"
    samples = parse(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "meetbit_bridge_deliveries", status="retrying") == 0
    assert value(samples, "meetbit_bridge_deliveries", status="dead") == 1
    # The worker's calls, which its own process cannot expose, on the web process's scrape.
    assert value(samples, "meetbit_bridge_worker_meetbit_calls_total", result="server_error") == 2

    sandbox.state.update_config({"failure_rate": 0.0})
    wrong = make_app(routes, ZAP_TOKEN=ZAP_TOKEN, MEETBIT_ACCESS_KEY_SECRET="not-the-secret")
    wrong_bridge: Bridge = wrong.extensions["bridge"]
    assert (
        wrong.test_client()
        .post("/hooks/ack", json={"calendar_id": 3, "event_id": 31}, headers=AUTH)
        .status_code
        == 202
    )
    assert Worker(wrong_bridge.ledger, wrong_bridge.dispatcher).run_once() == 1
    refused = lines_of(caplog, "bridge.delivery.dispatch")[-1]
    assert refused.levelname == "ERROR" and "refused the access key" in refused.getMessage()
    assert refused.__dict__["error_kind"] == "bad_credentials"
    assert "not-the-secret" not in caplog.text


def _wait_until_due(bridge: Bridge, delivery_id: str) -> None:
    import time

    delivery = bridge.ledger.deliveries.get(delivery_id)
    assert delivery is not None and delivery.next_attempt_at is not None
    time.sleep(max(0.0, delivery.next_attempt_at.timestamp() - time.time()) + 0.01)
