"""`meetbit-bridge deliveries ...` and `links ...` against a real SQLite ledger and the sandbox."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from bridge.cli import cli
from bridge.delivery.admin import PAGE_MAX
from bridge.ledger import Ledger
from tests.conftest import ZAP_TOKEN

ZAP = {"X-Bridge-Token": ZAP_TOKEN}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    # The same file make_app's bridge uses, so hooks sent through it show up here.
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


def run(args: list[str], env: dict[str, str], input: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, input=input, catch_exceptions=False)


def ledger_env(db_url: str) -> dict[str, str]:
    # Only DATABASE_URL: these commands must not need MeetBit credentials.
    return {"DATABASE_URL": db_url, "MEETBIT_BASE_URL": "", "MEETBIT_ACCESS_KEY_ID": ""}


def full_env(sandbox: Any, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "MEETBIT_BASE_URL": sandbox.url,
        "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
        "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
        "MEETBIT_RATE_LIMIT": "1000/s",
        "MEETBIT_TIMEOUT": "2,5",
        "BRIDGE_CONFIG": str(tmp_path / "bridge.yaml"),  # written by make_app
        "ZAP_TOKEN": ZAP_TOKEN,
    }


def hook(client: FlaskClient, event_id: int, route: str = "zap", **extra: Any) -> str:
    response = client.post(
        f"/hooks/{route}", json={"calendar_id": 12, "event_id": event_id, **extra}, headers=ZAP
    )
    return str(response.get_json()["delivery_id"])


def test_list_prints_a_table_and_filters(client: FlaskClient, db_url: str) -> None:
    canceled = hook(client, 345)
    client.post("/hooks/zap-lost", json={"stage": "won"}, headers=ZAP)

    result = run(["deliveries", "list"], ledger_env(db_url))
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()
    assert header.split()[:3] == ["ID", "CREATED", "(UTC)"]
    assert len(rows) == 2
    assert canceled in rows[1] and "canceled" in rows[1] and "12/345" in rows[1]

    only = run(["deliveries", "list", "--status", "ignored"], ledger_env(db_url))
    assert "zap-lost" in only.output and canceled not in only.output
    assert (
        run(["deliveries", "list", "--since", "1h"], ledger_env(db_url)).output.count("dlv_") == 2
    )
    later = run(["deliveries", "list", "--since", "2999-01-01"], ledger_env(db_url))
    assert later.output.strip() == "no deliveries"


def test_list_pages_with_a_cursor(client: FlaskClient, db_url: str) -> None:
    made = [hook(client, event_id) for event_id in (1, 2, 3)]
    first = run(["deliveries", "list", "--limit", "2"], ledger_env(db_url))
    assert made[2] in first.output and made[0] not in first.output
    more = first.output.strip().splitlines()[-1]
    assert more.startswith("more: meetbit-bridge deliveries list --cursor ")
    # The hint is the command for the next page, the page size included.
    assert more.endswith(" --limit 2")
    second = run(shlex.split(more.removeprefix("more: meetbit-bridge ")), ledger_env(db_url))
    assert made[0] in second.output and made[2] not in second.output


def test_bad_options_are_usage_errors(db_url: str) -> None:
    env = ledger_env(db_url)
    assert run(["deliveries", "list", "--status", "lost"], env).exit_code == 2
    assert run(["deliveries", "list", "--since", "yesterday"], env).exit_code == 2
    bad_cursor = run(["deliveries", "list", "--cursor", "nope"], env)
    assert bad_cursor.exit_code == 2 and "cursor" in bad_cursor.output


def test_show_prints_the_delivery_as_json(client: FlaskClient, db_url: str) -> None:
    dlv = hook(client, 345)
    result = run(["deliveries", "show", dlv], ledger_env(db_url))
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert (shown["id"], shown["status"], shown["outcome"]) == (dlv, "succeeded", "canceled")
    assert shown["event"]["id"] == 345
    assert datetime.fromisoformat(shown["created_at"]).tzinfo is not None

    missing = run(["deliveries", "show", "dlv_nope"], ledger_env(db_url))
    assert missing.exit_code == 1
    assert "no delivery" in missing.output


def test_replay_by_filter_cancels_what_failed(
    client: FlaskClient, sandbox: Any, tmp_path: Path
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    failed = [hook(client, event_id) for event_id in (1, 2, 3)]
    sandbox.state.update_config({"failure_rate": 0.0})
    done = hook(client, 4)

    env = full_env(sandbox, tmp_path)
    declined = run(["deliveries", "replay", "--status", "failed"], env, input="n\n")
    assert declined.exit_code == 1 and "Replay 3 deliveries?" in declined.output
    assert len(sandbox.calls()) == 4

    result = run(["deliveries", "replay", "--status", "failed", "--route", "zap", "--yes"], env)
    assert result.exit_code == 0, result.output
    assert "replayed 3: canceled: 3" in result.output
    statuses = [c["status"] for c in sandbox.calls()]
    assert statuses == [500, 500, 500, 200, 200, 200, 200]
    ledger = Ledger(env["DATABASE_URL"])
    try:
        assert {ledger.deliveries.get(d).outcome for d in failed} == {"canceled"}  # type: ignore[union-attr]
        assert ledger.deliveries.get(done).attempts == 1  # type: ignore[union-attr]
    finally:
        ledger.dispose()


def test_replay_by_id_reports_every_outcome(
    client: FlaskClient, sandbox: Any, tmp_path: Path
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    retried = hook(client, 1)
    already = hook(client, 2)
    sandbox.state.update_config({"failure_rate": 0.0})
    succeeded = hook(client, 3)
    hook(client, 2, note="again")  # a later webhook cancels it: its replay needs no call
    calls_before = len(sandbox.calls())

    env = full_env(sandbox, tmp_path)
    ids = [retried, already, succeeded, "dlv_unknown"]
    result = run(["deliveries", "replay", *ids, "--yes"], env)
    assert result.exit_code == 1  # the unknown id
    summary = result.output.strip().splitlines()[-1]
    assert summary == (
        "replayed 4: already_canceled: 1, canceled: 1, skipped (succeeded): 1, unknown: 1"
    )
    assert "unknown delivery dlv_unknown" in result.output
    assert [(c["event_id"], c["status"]) for c in sandbox.calls()[calls_before:]] == [(1, 200)]


def test_replay_that_fails_again_names_the_delivery(
    client: FlaskClient, sandbox: Any, tmp_path: Path
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    failing = hook(client, 1)
    result = run(["deliveries", "replay", failing, "--yes"], full_env(sandbox, tmp_path))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "replayed 1: failed: 1"
    assert f"{failing}: failed: MeetBit failed (500)" in result.output
    assert [c["status"] for c in sandbox.calls()] == [500, 500]


def test_replay_needs_ids_or_a_filter(sandbox: Any, tmp_path: Path) -> None:
    env = full_env(sandbox, tmp_path)
    assert run(["deliveries", "replay"], env).exit_code == 2
    assert run(["deliveries", "replay", "dlv_x", "--status", "dead"], env).exit_code == 2


def test_links_set_list_delete(db_url: str) -> None:
    env = ledger_env(db_url)
    assert run(["links", "set", " Ada@Example.COM", "12", "345"], env).output == (
        "linked: ada@example.com -> calendar 12 event 345\n"
    )
    again = run(["links", "set", "ada@example.com", "12", "345"], env)
    assert again.output.startswith("already linked")
    run(["links", "set", "ada@example.com", "12", "346"], env)
    run(["links", "set", "crm-7", "3", "4"], env)

    listed = run(["links", "list"], env).output.splitlines()
    assert listed[0].split() == ["KEY", "CALENDAR", "EVENT", "CREATED", "(UTC)"]
    assert [row.split()[:3] for row in listed[1:]] == [
        ["ada@example.com", "12", "345"],
        ["ada@example.com", "12", "346"],
        ["crm-7", "3", "4"],
    ]

    removed = run(["links", "delete", "ADA@example.com", "--event-id", "345"], env)
    assert removed.output == "removed 1 link(s) of ada@example.com\n"
    assert run(["links", "delete", "ada@example.com", "--event-id", "345"], env).exit_code == 1
    assert run(["links", "delete", "ada@example.com"], env).exit_code == 0
    assert "ada@" not in run(["links", "list"], env).output
    assert run(["links", "set", "k", "0", "1"], env).exit_code == 2


def test_an_empty_ledger_lists_nothing(db_url: str) -> None:
    assert run(["links", "list"], ledger_env(db_url)).output == "no links\n"
    assert run(["deliveries", "list"], ledger_env(db_url)).output == "no deliveries\n"


def test_the_hint_for_the_next_page_keeps_the_filters(client: FlaskClient, db_url: str) -> None:
    made = [hook(client, event_id) for event_id in (1, 2, 3)]
    client.post("/hooks/zap-lost", json={"stage": "won"}, headers=ZAP)  # newest, ignored
    first = run(["deliveries", "list", "--outcome", "canceled", "--limit", "2"], ledger_env(db_url))
    more = first.output.strip().splitlines()[-1]
    assert " --outcome canceled --limit 2" in more
    second = run(shlex.split(more.removeprefix("more: meetbit-bridge ")), ledger_env(db_url))
    assert second.output.count("dlv_") == 1 and made[0] in second.output


def test_outcome_state_and_since_filters(client: FlaskClient, sandbox: Any, db_url: str) -> None:
    canceled = hook(client, 1)
    sandbox.state.update_config({"failure_rate": 1.0})
    retrying = hook(client, 2)
    env = ledger_env(db_url)

    def listed(*options: str) -> set[str]:
        result = run(["deliveries", "list", *options], env)
        assert result.exit_code == 0, result.output
        return {word for word in result.output.split() if word.startswith("dlv_")}

    assert listed("--outcome", "canceled") == {canceled}
    assert listed("--state", "final") == {canceled}
    assert listed("--state", "retrying") == {retrying}
    assert listed("--since", "2h", "--state", "retrying") == {retrying}
    assert listed("--since", "0s") == set()


def test_version() -> None:
    result = run(["--version"], {})
    assert result.exit_code == 0
    assert result.output == f"meetbit-bridge {metadata.version('meetbit-bridge')}\n"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["db", "purge", "--days", "99999999999"], "--days"),
        (["db", "purge", "--days", "0"], "--days"),
        (["deliveries", "list", "--status", "lost"], "--status"),
        (["deliveries", "list", "--limit", "201"], "--limit"),
        (["deliveries", "list", "--since", "99999999999d"], "--since"),
        (["deliveries", "list", "--cursor", "nope"], "cursor"),
        (["deliveries", "replay"], "delivery IDs"),
        (["links", "set", "k" * 321, "1", "2"], "320 characters"),
        (["links", "set", "k", "0", "1"], "CALENDAR_ID"),
        (["no-such-command"], "No such command"),
    ],
)
def test_every_error_is_one_line_and_exit_2(db_url: str, args: list[str], names: str) -> None:
    result = run(args, ledger_env(db_url))
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and names in line
    assert "Traceback" not in result.output


def test_a_retention_too_long_to_compute_is_named(db_url: str) -> None:
    result = run(["db", "purge"], {**ledger_env(db_url), "BRIDGE_RETENTION_DAYS": "99999999999"})
    assert result.exit_code == 2
    assert result.stderr == (
        "error: BRIDGE_RETENTION_DAYS is 99999999999; set it to at most 36500 or pass --days\n"
    )
    assert run(["db", "purge", "--days", "36500"], ledger_env(db_url)).exit_code == 0


@pytest.mark.parametrize(
    "args", [["db", "upgrade"], ["db", "purge"], ["deliveries", "list"], ["links", "list"]]
)
def test_an_unreachable_database_names_host_and_cause_not_the_password(args: list[str]) -> None:
    env = {"DATABASE_URL": "postgresql://bridge:s3cr3t-pw@127.0.0.1:1/ledger"}
    result = run(args, env)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot reach the ledger database on 127.0.0.1:1: ")
    assert "Connection refused" in line and "check DATABASE_URL" in line
    assert "s3cr3t-pw" not in result.output


def test_the_api_and_the_command_line_cap_a_page_alike(
    make_app: Callable[..., Flask], db_url: str
) -> None:
    api = make_app(BRIDGE_ADMIN_TOKEN="adm").test_client()
    admin = {"Authorization": "Bearer adm"}
    for limit, accepted in ((PAGE_MAX, True), (PAGE_MAX + 1, False)):
        answered = api.get(f"/admin/deliveries?limit={limit}", headers=admin).status_code
        listed = run(["deliveries", "list", "--limit", str(limit)], ledger_env(db_url))
        assert (answered == 200, listed.exit_code == 0) == (accepted, accepted), limit


def test_worker_help_says_what_it_does() -> None:
    shown = run(["worker", "--help"], {}).output
    assert "Claims one due delivery at a time, under its own lease" in " ".join(shown.split())
    assert "claimed at a time" not in shown


def test_worker_starts_without_alembic_chatter(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("routes: {}\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",  # created and migrated on start
        "BRIDGE_CONFIG": str(config),
        "MEETBIT_BASE_URL": "http://127.0.0.1:9",
        "MEETBIT_ACCESS_KEY_ID": "k",
        "MEETBIT_ACCESS_KEY_SECRET": "s",
    }
    worker = subprocess.run(
        [sys.executable, "-c", "from bridge.cli import main; main()", "worker", "--until-idle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    # Not a terminal: JSON lines, one object each, with time, level and pid.
    lines = [json.loads(line) for line in worker.stderr.splitlines()]
    assert [line["message"].split()[0] for line in lines] == ["worker", "worker"]
    assert "started" in lines[0]["message"]
    assert "stopped after 0 deliveries" in lines[1]["message"]
    assert all(line["level"] == "INFO" and line["time"].endswith("+00:00") for line in lines)
    assert len({line["pid"] for line in lines}) == 1
