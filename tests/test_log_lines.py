"""CR and LF in what a client or MeetBit sends never forge a log line: every record the bridge
logs is one line, whatever the Idempotency-Key, the route name or MeetBit's error body holds."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from bridge.testing import free_port, wsgi_server
from tests.conftest import ZAP_TOKEN, bridge_env
from tests.test_gunicorn_conf import CONFIG, GUNICORN, ROOT, gunicorn_env

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


@contextmanager
def running(env: dict[str, str], access_log: Path, error_log: Path) -> Iterator[str]:
    """The bridge under gunicorn with the shipped config, its access and error logs in files."""
    port = free_port()
    command = [GUNICORN, "bridge:create_app()", "-c", str(CONFIG), "--workers", "1"]
    command += ["--bind", f"127.0.0.1:{port}", "--access-logfile", str(access_log)]
    with error_log.open("w") as errors:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=errors, stderr=errors)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, error_log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not become ready"
                try:
                    if requests.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


MARK = "FORGED-7d1e"  # what an attacker wants at the start of a log line of its own


@pytest.mark.slow
def test_under_gunicorn_each_request_is_one_access_line_and_no_line_is_the_attackers(
    sandbox: Any, tmp_path: Path
) -> None:
    """CR, LF and other control characters in the path, the query and body fields, of routed
    and unknown requests: the access log has exactly one line per request, and no line of the
    access or the error log starts with what the client sent. Control characters in a header
    value gunicorn refuses itself (400): one warning line naming the header, not its value."""
    env = {**gunicorn_env(bridge_env(sandbox, tmp_path)), "BRIDGE_ADMIN_TOKEN": "adm"}
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    crlf = f"\r\n{MARK} 2026-01-01 INFO forged\r\n"
    token = {"X-Bridge-Token": ZAP_TOKEN}
    form = {**token, "Content-Type": "application/x-www-form-urlencoded"}
    answered: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/hooks/zap%0D%0A{MARK}", {"json": {}}),
        ("POST", f"/hooks/zap?dry_run=1&x=%0D%0A{MARK}", {"json": {}, "headers": token}),
        ("POST", "/hooks/zap", {"json": {"calendar_id": crlf, "event_id": 1}, "headers": token}),
        (
            "POST",
            "/hooks/zap",
            {"json": {"calendar_id": 1, "event_id": 2, "note": crlf}, "headers": token},
        ),
        ("POST", "/hooks/zap", {"data": f"calendar_id=1&event_id={crlf}", "headers": form}),
        ("GET", f"/admin/deliveries?route=%0A{MARK}", {"headers": {"Authorization": "Bearer adm"}}),
        ("GET", f"/%0D%0A{MARK}", {}),
    ]
    refused = [
        ("POST", "/hooks/zap", {"json": {}, "headers": {"X-Bridge-Token": f"\x1b[2K{MARK}"}}),
        ("GET", "/healthz", {"headers": {"User-Agent": f"\x1b[1A\x1b[2K{MARK}"}}),
    ]
    with running(env, access_log, error_log) as url, requests.Session() as session:
        for method, path, kwargs in answered:
            resp = session.request(method, url + path, timeout=10, **kwargs)
            assert 200 <= resp.status_code < 500, (path, resp.text)
        for method, path, kwargs in refused:
            resp = requests.request(method, url + path, timeout=10, **kwargs)
            assert resp.status_code == 400, (path, resp.text)
    access = [line for line in access_log.read_text().splitlines() if '"GET /readyz ' not in line]
    assert len(access) == len(answered), access
    errors = error_log.read_text().splitlines()
    assert len([line for line in errors if "Invalid request" in line]) == len(refused), errors
    for line in access + errors:
        assert MARK not in line.split('"', 1)[0], line  # nothing before the request line
        assert not line.lstrip().startswith(MARK), line
        assert "\r" not in line and "\x1b" not in line, line
