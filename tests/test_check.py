"""`meetbit-bridge check`: names everything wrong at once, exit 2; lists the routes when fine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROUTES = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    when: "payload.stage == 'lost'"
    target: {calendar_id: "{{ payload.c }}", event_id: "{{ payload.e }}"}
    note: bye
"""


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from bridge.cli import main; main()", "check"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_problem_is_named_and_no_secret_is_printed(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    result = check(
        {
            "MEETBIT_BASE_URL": "https://acme.example.com",
            "MEETBIT_ACCESS_KEY_ID": "MBP-1",
            "MEETBIT_ACCESS_KEY_SECRET": "very-secret-value",
            "MEETBIT_RATE_LIMIT": "lots",
            "BRIDGE_CONFIG": str(config),
        }
    )
    assert result.returncode == 2
    assert "MEETBIT_RATE_LIMIT is invalid" in result.stderr
    assert "very-secret-value" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    # Once the settings are right, the route file's problems are named with their path.
    result = check(
        {
            "MEETBIT_BASE_URL": "https://acme.example.com",
            "MEETBIT_ACCESS_KEY_ID": "MBP-1",
            "MEETBIT_ACCESS_KEY_SECRET": "very-secret-value",
            "BRIDGE_CONFIG": str(config),
        }
    )
    assert result.returncode == 2
    assert f"{config}.routes.zap.auth.token_env: environment variable ZAP_TOKEN" in result.stderr


def test_a_valid_setup_lists_its_routes(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    result = check(
        {
            "MEETBIT_BASE_URL": "https://acme.example.com",
            "MEETBIT_ACCESS_KEY_ID": "MBP-1",
            "MEETBIT_ACCESS_KEY_SECRET": "s",
            "BRIDGE_CONFIG": str(config),
            "ZAP_TOKEN": "t",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "POST /hooks/zap  preset=generic  respond=sync" in result.stdout
    assert "when: payload.stage == 'lost'" in result.stdout
