"""The console through the Flask test client: off without a token, sign-in and its cookie,
throttling, CSRF, roles, security headers. The browser suite (test_console_browser.py) drives
the same pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.errors import ConfigError
from bridge.settings import Settings

ADMIN = "admin-token-for-tests"
VIEWER = "viewer-token-for-tests"


@pytest.fixture
def console(make_app: Callable[..., Flask]) -> Flask:
    return make_app(BRIDGE_ADMIN_TOKEN=ADMIN, BRIDGE_CONSOLE_VIEWER_TOKEN=VIEWER)


def _login_form(client: FlaskClient) -> str:
    page = client.get("/console/login")
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def sign_in(client: FlaskClient, token: str, next_url: str = "/console") -> object:
    nonce = _login_form(client)
    return client.post(
        "/console/login", data={"login_token": nonce, "token": token, "next": next_url}
    )


def csrf_of(client: FlaskClient, path: str = "/console") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_absent_without_admin_token(client: FlaskClient) -> None:
    for path in ("/console", "/console/login", "/console/static/console.css", "/console/x"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.mimetype == "application/problem+json"


def test_sign_in_sets_a_strict_http_only_cookie(console: Flask) -> None:
    client = console.test_client()
    answer = client.get("/console/deliveries?status=dead")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/console/login?next=")
    signed = sign_in(client, ADMIN, "/console/deliveries?status=dead")
    assert signed.status_code == 302  # type: ignore[attr-defined]
    assert signed.headers["Location"] == "/console/deliveries?status=dead"  # type: ignore[attr-defined]
    cookie = [
        c
        for c in signed.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
        if c.startswith("bridge_console=")
    ][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie
    assert ADMIN not in cookie
    page = client.get("/console")
    assert page.status_code == 200
    assert ADMIN not in page.text


def test_cookie_is_secure_behind_https(make_app: Callable[..., Flask]) -> None:
    app = make_app(BRIDGE_ADMIN_TOKEN=ADMIN, BRIDGE_PUBLIC_URL="https://bridge.example.com")
    client = app.test_client()
    signed = sign_in(client, ADMIN)
    cookies = signed.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
    assert cookies and all("Secure" in c and "SameSite=Strict" in c for c in cookies)
    login_page = client.get("/console/login").headers.getlist("Set-Cookie")
    assert all("Secure" in c and "HttpOnly" in c for c in login_page)


def test_wrong_token_then_throttled(console: Flask) -> None:
    client = console.test_client()
    for _ in range(10):
        answer = sign_in(client, "guess")
        assert answer.status_code == 401  # type: ignore[attr-defined]
        assert "Wrong token" in answer.text  # type: ignore[attr-defined]
    held = sign_in(client, ADMIN)
    assert held.status_code == 429  # type: ignore[attr-defined]
    assert int(held.headers["Retry-After"]) > 0  # type: ignore[attr-defined]
    assert client.get("/console").status_code == 302  # the right token was refused too
    # One count for both doors: the admin API is held off for this address too.
    api = client.get("/admin/deliveries", headers={"Authorization": f"Bearer {ADMIN}"})
    assert api.status_code == 429


def test_sign_in_without_its_form_token_is_refused(console: Flask) -> None:
    client = console.test_client()
    answer = client.post("/console/login", data={"token": ADMIN})
    assert answer.status_code == 403
    assert not any(c.startswith("bridge_console=") for c in answer.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize(
    "target", ["https://evil.example/console", "//evil.example/console", "/admin/deliveries",
               "/\\evil.example", "/console/login"],
)  # fmt: skip
def test_next_never_leaves_the_console(console: Flask, target: str) -> None:
    answer = sign_in(console.test_client(), ADMIN, target)
    assert answer.headers["Location"] == "/console"  # type: ignore[attr-defined]


def test_pages_send_a_strict_content_security_policy(console: Flask) -> None:
    client = console.test_client()
    sign_in(client, ADMIN)
    pages = ("/console/login", "/console", "/console/deliveries", "/console/routes",
             "/console/links", "/console/routes/zap/test",
             "/console/deliveries/dlv_nope")  # fmt: skip
    for path in pages:
        answer = client.get(path)
        csp = answer.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert " style=" not in answer.text and "<script>" not in answer.text
    assert client.get("/console/deliveries/dlv_nope").status_code == 404


def test_session_ends_when_its_token_is_rotated(make_app: Callable[..., Flask]) -> None:
    first = make_app(BRIDGE_ADMIN_TOKEN=ADMIN, BRIDGE_SESSION_SECRET="k" * 32)
    client = first.test_client()
    sign_in(client, ADMIN)
    assert client.get("/console").status_code == 200
    rotated = make_app(BRIDGE_ADMIN_TOKEN=ADMIN + "-next", BRIDGE_SESSION_SECRET="k" * 32)
    other = rotated.test_client()
    for cookie in client._cookies.values():  # the same browser, the bridge restarted
        other.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    assert other.get("/console").status_code == 302


def test_forged_cookie_is_no_session(console: Flask) -> None:
    client = console.test_client()
    client.set_cookie("bridge_console", '{"role": "admin"}', path="/console")
    assert client.get("/console").status_code == 302


def test_viewer_sees_but_cannot_change(console: Flask, client: FlaskClient) -> None:
    viewer = console.test_client()
    sign_in(viewer, VIEWER)
    admin_api = {"Authorization": f"Bearer {ADMIN}"}
    viewer.application.test_client().put(
        "/admin/links/jane@example.com", json={"calendar_id": 1, "event_id": 2}, headers=admin_api
    )
    page = viewer.get("/console/links")
    assert "jane@example.com" in page.text and ">Delete<" not in page.text
    csrf = csrf_of(viewer, "/console/links")
    refused = viewer.post(
        "/console/links/delete",
        data={"csrf_token": csrf, "key": "jane@example.com", "calendar_id": "1", "event_id": "2"},
    )
    assert refused.status_code == 403
    still = viewer.application.test_client().get("/admin/links/jane@example.com", headers=admin_api)
    assert still.status_code == 200


def test_admin_deletes_a_link_with_csrf_only(console: Flask) -> None:
    client = console.test_client()
    sign_in(client, ADMIN)
    admin_api = {"Authorization": f"Bearer {ADMIN}"}
    api = console.test_client()
    api.put("/admin/links/key-1", json={"calendar_id": 1, "event_id": 2}, headers=admin_api)
    form = {"key": "key-1", "calendar_id": "1", "event_id": "2"}
    assert client.post("/console/links/delete", data=form).status_code == 403
    assert client.post("/console/links/delete", data={**form, "csrf_token": "x"}).status_code == 403
    assert api.get("/admin/links/key-1", headers=admin_api).status_code == 200
    done = client.post("/console/links/delete", data={**form, "csrf_token": csrf_of(client)})
    assert done.status_code == 302
    assert api.get("/admin/links/key-1", headers=admin_api).status_code == 404


def test_sign_out_needs_csrf_and_ends_the_session(console: Flask) -> None:
    client = console.test_client()
    sign_in(client, ADMIN)
    assert client.post("/console/logout").status_code == 403
    assert client.get("/console").status_code == 200
    out = client.post("/console/logout", data={"csrf_token": csrf_of(client)})
    assert out.status_code == 302
    assert client.get("/console").status_code == 302


def test_route_tester_writes_nothing(console: Flask) -> None:
    client = console.test_client()
    sign_in(client, ADMIN)
    answer = client.post(
        "/console/routes/zap/test",
        data={
            "csrf_token": csrf_of(client),
            "headers": "Content-Type: application/json\nX-Bridge-Token: tok-1",
            "body": '{"calendar_id": 5, "event_id": 6}',
        },
    )
    assert answer.status_code == 200
    assert "verified" in answer.text and "calendar <strong" in answer.text
    listed = client.get("/admin/deliveries", headers={"Authorization": f"Bearer {ADMIN}"})
    assert listed.json["deliveries"] == []  # type: ignore[index]
    bad = client.post(
        "/console/routes/zap/test",
        data={"csrf_token": csrf_of(client), "headers": "no colon here", "body": "{}"},
    )
    assert "Headers, line 1" in bad.text


def test_viewer_token_must_differ_from_the_admin_token() -> None:
    env = {"MEETBIT_BASE_URL": "http://x", "MEETBIT_ACCESS_KEY_ID": "a",
           "MEETBIT_ACCESS_KEY_SECRET": "b", "BRIDGE_ADMIN_TOKEN": "same",
           "BRIDGE_CONSOLE_VIEWER_TOKEN": "same"}  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert "BRIDGE_CONSOLE_VIEWER_TOKEN" in str(raised.value) and "same" not in str(raised.value)
