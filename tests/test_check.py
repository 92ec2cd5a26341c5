"""`meetbit-bridge check`: names everything wrong at once, exit 2; lists the routes when fine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    assert len(settings) == 21 and len(gunicorn) == 6  # the patterns still find them all
    assert {"BRIDGE_LOG_FORMAT", "BRIDGE_SKIP_DOTENV"} <= set(named)
    assert set(settings + gunicorn + named) - listed == set()


# -- check --online: the ledger's revision and one harmless MeetBit call -----------------------


def online(env: dict[str, str]) -> Any:
    from click.testing import CliRunner

    from bridge.cli import cli

    return CliRunner().invoke(cli, ["check", "--online"], env=env, catch_exceptions=False)


def online_env(sandbox: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    return {
        "MEETBIT_BASE_URL": sandbox.url,
        "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
        "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
        "BRIDGE_CONFIG": str(config),
        "ZAP_TOKEN": "t",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        **extra,
    }


def test_online_names_the_revision_and_a_working_key_cancelling_nothing(
    sandbox: Any, tmp_path: Path
) -> None:
    env = online_env(sandbox, tmp_path)
    from bridge.delivery.maintenance import upgrade_schema
    from bridge.ledger import migrate

    upgrade_schema(env["DATABASE_URL"])
    result = online(env)
    assert result.exit_code == 0, result.output
    [head] = sorted(migrate.head_revisions())
    assert f"schema up to date (revision {head}, newest {head})" in result.output
    assert "meetbit: " + sandbox.url + ": key accepted (MeetBit answered 404" in result.output
    # The one call: event 0 of calendar 0, no note; nothing canceled.
    assert [(c["calendar_id"], c["event_id"], c["status"]) for c in sandbox.calls()] == [
        (0, 0, 404)
    ]
    assert sandbox.stats()["cancels"] == {}


def test_online_names_every_failure_without_a_secret(sandbox: Any, tmp_path: Path) -> None:
    env = online_env(
        sandbox,
        tmp_path,
        MEETBIT_ACCESS_KEY_SECRET="wrong-secret-value",
        DATABASE_URL="postgresql://postgres:pg-pass-123@127.0.0.1:1/bridge",
    )
    result = online(env)
    assert result.exit_code == 2
    assert "ledger: FAILED: cannot reach" in result.output
    assert "FAILED: MeetBit rejected the access key id or secret" in result.output
    assert "wrong-secret-value" not in result.output and "pg-pass-123" not in result.output

    denied = online_env(
        sandbox,
        tmp_path,
        MEETBIT_ACCESS_KEY_ID=sandbox.config.denied_key_id,
        MEETBIT_ACCESS_KEY_SECRET=sandbox.config.denied_key_secret,
    )
    result = online(denied)
    assert result.exit_code == 2
    assert "the access key's role lacks events.delete.*" in result.output
    assert "ledger: " in result.output and "ledger: FAILED" not in result.output

    gone = online_env(
        sandbox, tmp_path, MEETBIT_BASE_URL="http://127.0.0.1:9", MEETBIT_TIMEOUT="1,1"
    )
    result = online(gone)
    assert result.exit_code == 2 and "cannot reach MeetBit at http://127.0.0.1:9" in result.output


def test_dotenv_is_read_for_local_runs_and_never_overrides_the_environment(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / ".env").write_text(
        "MEETBIT_BASE_URL=https://from-dotenv.example.com\n"
        "MEETBIT_ACCESS_KEY_ID=MBP-1\nMEETBIT_ACCESS_KEY_SECRET=s\nZAP_TOKEN=t\n"
        f"BRIDGE_CONFIG={config}\nMEETBIT_RATE_LIMIT=3/s\n"
    )

    def run(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from bridge.cli import main; main()", "check"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # Found upward from the working directory, as `flask` finds it; the environment wins.
    result = run(project / "sub", MEETBIT_RATE_LIMIT="2/s")
    assert result.returncode == 0, result.stderr
    assert "settings: ok (https://from-dotenv.example.com, rate 2/s)" in result.stdout
    skipped = run(project / "sub", BRIDGE_SKIP_DOTENV="1")
    assert skipped.returncode == 2 and "MEETBIT_BASE_URL is required" in skipped.stderr
