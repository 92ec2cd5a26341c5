"""`meetbit-bridge check`: names everything wrong at once, exit 2; lists the routes when fine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
    assert result.stderr.startswith("error: invalid configuration: ")
    assert len(result.stderr.splitlines()) == 1
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


def test_env_example_lists_every_variable_the_code_reads() -> None:
    example = (ROOT / "config/.env.example").read_text()
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    settings = re.findall(r'read\(\s*"([A-Z0-9_]+)"', (ROOT / "bridge/settings.py").read_text())
    gunicorn_conf = (ROOT / "config/gunicorn.conf.py").read_text()
    gunicorn = re.findall(r"os\.environ\.get\(['\"]([A-Z0-9_]+)['\"]", gunicorn_conf)
    gunicorn += re.findall(r'^_METRICS_ENV = "([A-Z0-9_]+)"', gunicorn_conf, re.MULTILINE)
    # Read outside Settings (before it exists, or by a library's convention): named constants.
    named = [
        name
        for path in (ROOT / "bridge").rglob("*.py")
        if "sandbox" not in path.parts
        for name in re.findall(r'^[A-Z_]*_ENV = "([A-Z0-9_]+)"', path.read_text(), re.MULTILINE)
    ]
    assert len(settings) == 20 and len(gunicorn) == 6  # the patterns still find them all
    assert {"BRIDGE_LOG_FORMAT", "BRIDGE_SKIP_DOTENV"} <= set(named)
    assert set(settings + gunicorn + named) - listed == set()
