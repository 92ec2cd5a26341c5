"""config/gunicorn.conf.py: whom X-Forwarded-* is trusted from, and what the access log keeps.

Read through gunicorn itself (`--print-config`), and checked against a real gunicorn serving
the bridge with its access log in a file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.testing import free_port
from tests.conftest import ZAP_TOKEN, bridge_env

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "gunicorn.conf.py"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
HUBSPOT_SECRET = "9d2c7b1a-4e3f-4a5b-8c6d-7e8f9a0b1c2d"
ROUTES = """
routes:
  zap:
    preset: generic
    auth: {basic_user_env: ZAP_USER, basic_password_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled"
  hubspot:
    preset: hubspot
    secret_env: HUBSPOT_CLIENT_SECRET
    respond: sync
    target: {link: "hubspot-deal:{{ event.objectId }}"}
    note: "Deal lost"
"""
# The Basic user name is itself a credential for some senders (an API key as the user).
BASIC_USER = "user-apikey-7f3e9a"


def gunicorn_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return {**env, **(extra or {})}


@pytest.fixture
def app_env(sandbox: Any, tmp_path: Path) -> dict[str, str]:
    """What the bridge needs to load (gunicorn --print-config loads the app after printing)."""
    return {
        **bridge_env(sandbox, tmp_path, ROUTES),
        "ZAP_USER": BASIC_USER,
        "HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
    }


def printed_config(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [GUNICORN, "--print-config", "-c", str(CONFIG), "bridge:create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    settings = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def test_forwarded_headers_are_trusted_from_loopback_only_by_default(
    app_env: dict[str, str],
) -> None:
    settings = printed_config(gunicorn_env(app_env))
    assert settings["forwarded_allow_ips"] == "['127.0.0.1', '::1']"


def test_forwarded_allow_ips_comes_from_the_operator(app_env: dict[str, str]) -> None:
    operator = {**app_env, "FORWARDED_ALLOW_IPS": "10.0.0.0/8,192.0.2.7"}
    settings = printed_config(gunicorn_env(operator))
    assert settings["forwarded_allow_ips"] == "['10.0.0.0/8', '192.0.2.7']"


def test_access_log_format_has_no_user_query_or_referrer(app_env: dict[str, str]) -> None:
    log_format = printed_config(gunicorn_env(app_env))["access_log_format"]
    # %(u)s is the Basic user, %(r)s the request line with its query, %(q)s the query itself,
    # %(f)s the Referer (which carries the referring page's query).
    for atom in ("%(u)s", "%(r)s", "%(q)s", "%(f)s"):
        assert atom not in log_format
    assert "%(U)s" in log_format and "%(s)s" in log_format


@contextmanager
def running_gunicorn(env: dict[str, str], access_log: Path) -> Iterator[str]:
    port = free_port()
    command = [GUNICORN, "bridge:create_app()", "-c", str(CONFIG), "--workers", "1"]
    command += ["--bind", f"127.0.0.1:{port}", "--access-logfile", str(access_log)]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "gunicorn exited"
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


def hubspot_v2(uri: str, body: bytes) -> dict[str, str]:
    signature = hashlib.sha256(HUBSPOT_SECRET.encode() + b"POST" + uri.encode() + body)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": signature.hexdigest(),
        "X-HubSpot-Signature-Version": "v2",
    }


@pytest.mark.slow
def test_real_gunicorn_logs_no_credentials_and_ignores_untrusted_forwarded_headers(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    access_log = tmp_path / "access.log"
    # Not the loopback address the test connects from: its X-Forwarded-* is not trusted.
    extra = {**app_env, "FORWARDED_ALLOW_IPS": "192.0.2.7"}
    with running_gunicorn(gunicorn_env(extra), access_log) as url:
        basic = base64.b64encode(f"{BASIC_USER}:{ZAP_TOKEN}".encode()).decode()
        resp = requests.post(
            f"{url}/hooks/zap?api_key=query-secret-5c1d&dry_run=1",
            json={"calendar_id": 21, "event_id": 2100},
            headers={"Authorization": f"Basic {basic}", "Referer": "https://x/?t=ref-secret-9"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        # A path with an encoded newline must not forge a second log line.
        requests.get(f"{url}/hooks/zap%0D%0Aforged-line", timeout=10)

        body = b"[]"
        origin = url.replace("http://", "")
        # Signed for https: an untrusted peer cannot make the bridge believe it was https.
        https_signed = hubspot_v2(f"https://{origin}/hooks/hubspot", body)
        spoofed = {**https_signed, "X-Forwarded-Proto": "https"}
        resp = requests.post(f"{url}/hooks/hubspot", data=body, headers=spoofed, timeout=10)
        assert resp.status_code in (400, 401), resp.text
        http_signed = hubspot_v2(f"http://{origin}/hooks/hubspot", body)
        resp = requests.post(f"{url}/hooks/hubspot", data=body, headers=http_signed, timeout=10)
        assert resp.status_code == 200, resp.text

    log = access_log.read_text()
    assert "/hooks/zap" in log
    for secret in (BASIC_USER, "query-secret-5c1d", "ref-secret-9", basic, ZAP_TOKEN):
        assert secret not in log
    assert not any(line.startswith("forged-line") for line in log.splitlines())
