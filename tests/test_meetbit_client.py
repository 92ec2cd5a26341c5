"""MeetBitClient against a real sandbox (and tiny hand-made servers for what it cannot say)."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from werkzeug.wrappers import Request, Response

from bridge.meetbit import (
    CanceledEvent,
    MeetBitAuthError,
    MeetBitBadResponse,
    MeetBitClient,
    MeetBitConnectionError,
    MeetBitError,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitServerError,
    MeetBitTimeout,
    MeetBitValidationError,
    parse_retry_after,
)
from bridge.sandbox import SandboxConfig, SandboxServer, generate_event
from bridge.testing import WSGIApp, wsgi_server

KEY_ID = "MBP-test-key-7f3a"
JSON = "application/json"
SECRET = "s3cr3t-do-not-leak-9b1e"


def answering(
    status: int, body: bytes | str, content_type: str, headers: dict[str, str] | None = None
) -> tuple[WSGIApp, list[Request]]:
    seen: list[Request] = []

    @Request.application
    def app(request: Request) -> Response:
        request.get_data()
        seen.append(request)
        return Response(body, status=status, content_type=content_type, headers=headers)

    return app, seen


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(key_id=KEY_ID, key_secret=SECRET, rate_limit=0)
    with SandboxServer(config) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[MeetBitClient]:
    with MeetBitClient(sandbox.url + "/", KEY_ID, SECRET, timeout=(1.0, 2.0)) as meetbit:
        yield meetbit


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "detail", "")):
        assert SECRET not in text
        assert KEY_ID not in text


def test_cancel_returns_the_event_exactly_as_sent(
    sandbox: SandboxServer, client: MeetBitClient
) -> None:
    result = client.cancel_event(12, 345, "Deal lost — customer went with a competitor")
    assert isinstance(result, CanceledEvent)
    assert result.message == "Event canceled."
    assert result.event == sandbox.state.canceled[(12, 345)]
    assert result.event["cancel_note"] == "Deal lost — customer went with a competitor"
    assert result.event["deleted_at"] is not None
    before = generate_event(12, 345)
    assert result.event["title"] == before["title"]
    assert result.event["attendees"] == before["attendees"]
    assert sandbox.calls()[0]["key_id"] == KEY_ID


def test_rate_limit_headers_are_reported() -> None:
    config = SandboxConfig(key_id=KEY_ID, key_secret=SECRET, rate_limit=5, window="sliding")
    with SandboxServer(config) as sandbox, MeetBitClient(sandbox.url, KEY_ID, SECRET) as client:
        first = client.cancel_event(1, 1, "a")
        second = client.cancel_event(1, 2, "b")
    assert first.rate_limit is not None and second.rate_limit is not None
    assert (first.rate_limit.limit, first.rate_limit.remaining) == (5, 4)
    assert second.rate_limit.remaining == 3
    assert second.rate_limit.reset == 1.0


def test_request_carries_both_keys_and_a_json_note() -> None:
    seen: list[Request] = []

    @Request.application
    def app(request: Request) -> Response:
        request.get_data()
        seen.append(request)
        # The Event asked for: /api/public/v2.0/calendars/<c>/events/<e>/cancel
        calendar_id, event_id = (int(part) for part in request.path.split("/")[5:8:2])
        envelope = {"message": "Event canceled.", "data": generate_event(calendar_id, event_id)}
        return Response(json.dumps(envelope), content_type=JSON)

    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        client.cancel_event(7, 8, "Ticket solved")
        # The same thread's next call: its own path, body and length (multi-byte note).
        client.cancel_event(70, 80, "Deal lost — «clôturé»")
    first, second = seen
    assert first.method == "POST"
    assert first.path == "/api/public/v2.0/calendars/7/events/8/cancel"
    assert first.headers["X-Access-Key-Id"] == KEY_ID
    assert first.headers["X-Access-Key-Secret"] == SECRET
    assert first.mimetype == "application/json"
    assert json.loads(first.get_data()) == {"cancel_note": "Ticket solved"}
    assert first.headers["User-Agent"].startswith("meetbit-bridge")
    assert second.path == "/api/public/v2.0/calendars/70/events/80/cancel"
    assert json.loads(second.get_data()) == {"cancel_note": "Deal lost — «clôturé»"}
    assert int(second.headers["Content-Length"]) == len(second.get_data())
    assert second.headers["X-Access-Key-Secret"] == SECRET


def test_bad_key(sandbox: SandboxServer) -> None:
    with MeetBitClient(sandbox.url, KEY_ID, "wrong-secret") as client:
        with pytest.raises(MeetBitAuthError) as info:
            client.cancel_event(1, 2, "note")
    exc = info.value
    assert (exc.reason, exc.status) == ("bad_credentials", 401)
    assert "wrong-secret" not in str(exc) and "wrong-secret" not in repr(exc)


def test_denied_key(sandbox: SandboxServer) -> None:
    config = sandbox.config
    with MeetBitClient(sandbox.url, config.denied_key_id, config.denied_key_secret) as client:
        with pytest.raises(MeetBitPermissionError) as info:
            client.cancel_event(1, 2, "note")
    assert (info.value.reason, info.value.status) == ("permission_denied", 401)
    assert "events.delete" in str(info.value)


def test_not_found(client: MeetBitClient) -> None:
    with pytest.raises(MeetBitNotFound) as info:
        client.cancel_event(1, 900_001, "note")
    assert (info.value.reason, info.value.status) == ("not_found", 404)
    assert_no_secret(info.value)


def test_validation_errors_carry_the_fields(client: MeetBitClient) -> None:
    with pytest.raises(MeetBitValidationError) as info:
        client.cancel_event(1, 2, "x" * 256)
    exc = info.value
    assert (exc.reason, exc.status) == ("invalid_request", 400)
    assert exc.errors == {
        "cancel_note": ["The cancel note field must not be greater than 255 characters."]
    }
    assert "255" in exc.detail


def test_rate_limited_with_retry_after() -> None:
    config = SandboxConfig(
        key_id=KEY_ID, key_secret=SECRET, rate_limit=1, retry_after=7, window="sliding"
    )
    with SandboxServer(config) as sandbox, MeetBitClient(sandbox.url, KEY_ID, SECRET) as client:
        client.cancel_event(1, 1, "first")
        with pytest.raises(MeetBitRateLimited) as info:
            client.cancel_event(1, 2, "second")
    exc = info.value
    assert (exc.reason, exc.status, exc.retry_after) == ("rate_limited", 429, 7.0)


def test_server_error(sandbox: SandboxServer, client: MeetBitClient) -> None:
    sandbox.config.failure_rate = 1.0
    with pytest.raises(MeetBitServerError) as info:
        client.cancel_event(1, 2, "note")
    assert (info.value.reason, info.value.status) == ("server_error", 500)
    assert info.value.sent is True
    sandbox.config.failure_rate = 0.0
    assert client.cancel_event(1, 2, "note").event["id"] == 2  # nothing was canceled


def test_read_timeout_may_have_been_sent(sandbox: SandboxServer, client: MeetBitClient) -> None:
    sandbox.config.latency = 0.6
    started = time.monotonic()
    with pytest.raises(MeetBitTimeout) as info:
        # A deadline shortens the configured read timeout (2 s) ...
        client.cancel_event(1, 2, "note", read_timeout=0.15)
    assert time.monotonic() - started < 0.5
    assert (info.value.reason, info.value.sent) == ("timeout", True)
    assert_no_secret(info.value)


def test_read_timeout_is_never_lengthened(sandbox: SandboxServer) -> None:
    sandbox.config.latency = 0.6
    with MeetBitClient(sandbox.url, KEY_ID, SECRET, timeout=(1.0, 0.15)) as client:
        started = time.monotonic()
        with pytest.raises(MeetBitTimeout):
            client.cancel_event(1, 2, "note", read_timeout=30)
        assert time.monotonic() - started < 0.5


def test_passed_deadline_calls_nothing(sandbox: SandboxServer, client: MeetBitClient) -> None:
    with pytest.raises(MeetBitTimeout) as info:
        client.cancel_event(1, 2, "note", read_timeout=0)
    assert info.value.sent is False
    assert sandbox.calls() == []


def test_refused_connection_was_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with MeetBitClient(f"http://127.0.0.1:{port}", KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitConnectionError) as info:
            client.cancel_event(1, 2, "note")
    exc = info.value
    assert (exc.reason, exc.sent) == ("connection_error", False)
    assert_no_secret(exc)


def test_connection_dropped_after_request_may_have_been_sent() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def swallow_and_hang_up() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)

    thread = threading.Thread(target=swallow_and_hang_up)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with MeetBitClient(url, KEY_ID, SECRET) as client:
            with pytest.raises(MeetBitConnectionError) as info:
                client.cancel_event(1, 2, "note")
    finally:
        thread.join()
        listener.close()
    assert info.value.sent is True


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html>Welcome to nginx</html>", "text/html"),
        ("{not json", "application/json"),
        (json.dumps({"message": "ok"}), "application/json"),
        (json.dumps({"message": "ok", "data": {"title": "no ids"}}), "application/json"),
        (json.dumps([1, 2]), "application/json"),
        (json.dumps({"data": generate_event(1, 2)}), "application/json"),
        (json.dumps({"message": 5, "data": generate_event(1, 2)}), "application/json"),
        (json.dumps({"message": "ok", "data": [generate_event(1, 2)]}), "application/json"),
        (json.dumps({"message": "ok", "data": {**generate_event(1, 2), "id": "2"}}), JSON),
        (json.dumps({"message": "ok", "data": {**generate_event(1, 2), "id": 2.0}}), JSON),
        (
            json.dumps({"message": "ok", "data": {**generate_event(1, 2), "calendar_id": True}}),
            JSON,
        ),
    ],
    ids=[
        "html",
        "broken-json",
        "no-data",
        "event-without-ids",
        "array",
        "no-message",
        "message-not-a-string",
        "data-not-an-object",
        "string-id",
        "float-id",
        "bool-calendar",
    ],
)
def test_success_without_the_envelope_is_a_bad_response(body: str, content_type: str) -> None:
    app, _ = answering(200, body, content_type)
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitBadResponse) as info:
            client.cancel_event(1, 2, "note")
    exc = info.value
    assert (exc.reason, exc.sent, exc.status) == ("bad_response", True, 200)


@pytest.mark.parametrize(
    ("calendar_id", "event_id", "field"),
    [(1, 3, "id"), (9, 2, "calendar_id")],
    ids=["other-event", "other-calendar"],
)
def test_a_200_for_another_event_is_a_bad_answer(
    calendar_id: int, event_id: int, field: str
) -> None:
    envelope = {"message": "Event canceled.", "data": generate_event(calendar_id, event_id)}
    app, seen = answering(200, json.dumps(envelope), JSON)
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitBadResponse) as info:
            client.cancel_event(1, 2, "note")
    exc = info.value
    assert (exc.reason, exc.sent, exc.status) == ("bad_response", True, 200)
    assert f"`{field}`" in exc.detail and "asked for" in exc.detail
    assert len(seen) == 1
    assert_no_secret(exc)


def test_the_event_is_passed_on_as_sent_beyond_what_the_bridge_checks() -> None:
    """Only the ids and the envelope are checked: new or odd fields reach the sender unchanged."""
    event = {**generate_event(1, 2), "attendees": "everyone", "recurrence": {"rule": "WEEKLY"}}
    app, _ = answering(200, json.dumps({"message": "Event canceled.", "data": event}), JSON)
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        result = client.cancel_event(1, 2, "note")
    assert result.event == event and result.message == "Event canceled."


@pytest.mark.parametrize("status", [502, 503, 302, 418])
def test_other_statuses_are_server_errors(status: int) -> None:
    # A proxy page that echoes the key must not carry it into our messages.
    app, _ = answering(status, f"upstream said {SECRET}", "text/plain")
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitServerError) as info:
            client.cancel_event(1, 2, "note")
    assert info.value.status == status
    assert "upstream said ***" in info.value.detail
    assert_no_secret(info.value)


def test_plural_401_body_is_still_bad_credentials() -> None:
    app, _ = answering(401, "Invalid or missing access keys.", "text/plain")
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitAuthError):
            client.cancel_event(1, 2, "note")


def test_429_retry_after_as_http_date() -> None:
    later = formatdate(time.time() + 120, usegmt=True)
    app, _ = answering(429, "Too many requests.", "text/plain", {"Retry-After": later})
    with wsgi_server(app) as url, MeetBitClient(url, KEY_ID, SECRET) as client:
        with pytest.raises(MeetBitRateLimited) as info:
            client.cancel_event(1, 2, "note")
    assert 115 <= info.value.retry_after <= 121


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 1.0), ("", 1.0), ("soon", 1.0), ("60", 60.0), ("0", 0.0), ("86400", 3600.0)],
)
def test_parse_retry_after(value: str | None, expected: float) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_past_date_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_secret_never_in_repr() -> None:
    client = MeetBitClient("https://acme.example.com/", KEY_ID, SECRET)
    assert SECRET not in repr(client) and KEY_ID not in repr(client)
    assert client.api_url == "https://acme.example.com/api/public/v2.0"
    client.close()
    pasted = MeetBitClient("https://acme.example.com/api/public/v2.0/", KEY_ID, SECRET)
    assert pasted.api_url == "https://acme.example.com/api/public/v2.0"


def test_base_url_must_be_an_origin() -> None:
    with pytest.raises(ValueError):
        MeetBitClient("acme.example.com", KEY_ID, SECRET)


def test_one_session_per_thread(client: MeetBitClient) -> None:
    mine = client.transport._session().session
    assert client.transport._session().session is mine
    theirs: list[object] = []
    worker = threading.Thread(target=lambda: theirs.append(client.transport._session().session))
    worker.start()
    worker.join()
    assert theirs[0] is not mine
    # A finished thread's Session is closed and forgotten, not leaked.
    assert client.transport._sessions == {mine}
    client.close()
    assert client.transport._session().session is not mine  # closed sessions are never reused


def test_concurrent_cancels_from_many_threads(
    sandbox: SandboxServer, client: MeetBitClient
) -> None:
    results: list[CanceledEvent | MeetBitError] = []

    def cancel(event_id: int) -> None:
        try:
            results.append(client.cancel_event(3, event_id, "bulk"))
        except MeetBitError as exc:
            results.append(exc)

    threads = [threading.Thread(target=cancel, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.event["id"] for r in results if isinstance(r, CanceledEvent)) == list(
        range(1, 9)
    )
    assert sandbox.stats()["cancels"] == {f"3/{i}": 1 for i in range(1, 9)}
    gc.collect()  # no socket of a finished thread is left unclosed (ResourceWarning is an error)
    assert client.transport._sessions == set()
