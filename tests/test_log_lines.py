"""CR and LF in what a client or MeetBit sends never forge a log line: every record the bridge
logs is one line, whatever the Idempotency-Key, the route name or MeetBit's error body holds."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flask import Flask

from bridge.testing import wsgi_server
from tests.conftest import ZAP_TOKEN

FORGED = "x\r\n2026-01-01 00:00:00 INFO admin token accepted\r\n"
ADMIN = {"Authorization": "Bearer adm"}


def failing_meetbit(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A MeetBit that fails every cancel, echoing the request (with its note) over many lines,
    as a proxy's or a framework's error page may."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    sent = json.loads(environ["wsgi.input"].read(length) or b"{}")
    body = f"Server Error\r\n{json.dumps(sent, indent=2)}\r\n".replace("\\r\\n", "\r\n")
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [body.encode()]


@pytest.fixture
def meetbit() -> Iterator[str]:
    with wsgi_server(failing_meetbit) as url:
        yield url


def one_line_each(records: list[logging.LogRecord]) -> list[str]:
    messages = [r.getMessage() for r in records if r.name.startswith("bridge")]
    for message in messages:
        assert "\n" not in message and "\r" not in message, message
    return messages


def test_crlf_from_a_client_or_meetbit_stays_on_one_log_line(
    make_app: Callable[..., Flask], meetbit: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(BRIDGE_ADMIN_TOKEN="adm", MEETBIT_BASE_URL=meetbit, MEETBIT_TIMEOUT="2,2")
    client = app.test_client()
    # werkzeug's client refuses CR/LF in headers; a raw environ is what a lax proxy passes on.
    sender = {"HTTP_IDEMPOTENCY_KEY": FORGED, "HTTP_X_BRIDGE_TOKEN": ZAP_TOKEN}
    payload = {"calendar_id": 12, "event_id": 345, "note": FORGED}
    failed = client.post("/hooks/zap", json=payload, environ_base=sender)
    assert failed.status_code == 502, failed.get_json()
    for route in ("zap%0D%0Aforged", "%0D%0A", "zap%0Aforged"):
        assert client.post(f"/hooks/{route}", json=payload, environ_base=sender).status_code == 404
    replayed = client.post(
        f"/admin/deliveries/{failed.get_json()['delivery_id']}/replay", headers=ADMIN
    )
    assert replayed.status_code == 502
    listed = client.get("/admin/deliveries", query_string={"route": FORGED}, headers=ADMIN)
    assert listed.status_code == 422

    messages = one_line_each(caplog.records)
    # What MeetBit said is still logged, escaped: the operator loses nothing.
    answered = [m for m in messages if m.startswith("answered 502")]
    assert len(answered) == 2 and "\\r\\n" in answered[0] and "admin token accepted" in answered[0]
