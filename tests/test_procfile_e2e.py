"""The Procfile's `web:` command under real gunicorn, cancelling through the MeetBit sandbox."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.testing import free_port
from tests.conftest import ZAP_TOKEN, bridge_env

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(kind: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return shlex.split(command)
    raise AssertionError(f"no {kind}: line in the Procfile")


@pytest.mark.slow
def test_procfile_web_cancels_once_and_replays(sandbox: Any, tmp_path: Path) -> None:
    command = procfile_command("web")
    assert command[0] == "gunicorn"
    port = free_port()
    env = {**os.environ, **bridge_env(sandbox, tmp_path), "PORT": str(port)}
    # The venv's gunicorn, whatever PATH the test runner was started with.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
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
        hook = f"{url}/hooks/zap"
        body = {"calendar_id": 21, "event_id": 2100, "note": "Deal lost"}
        headers = {"X-Bridge-Token": ZAP_TOKEN}
        first = requests.post(hook, json=body, headers=headers, timeout=10)
        assert first.status_code == 200
        assert first.json()["outcome"] == "canceled"
        assert first.json()["event"]["cancel_note"] == "Deal lost"
        assert "Idempotent-Replayed" not in first.headers
        second = requests.post(hook, json=body, headers=headers, timeout=10)
        assert second.status_code == 200
        assert second.json() == first.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        assert [(c["event_id"], c["status"]) for c in sandbox.calls()] == [(2100, 200)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
