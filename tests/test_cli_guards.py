"""The command line against hostile or mistaken input: extreme times and keys are one-line errors,
`db purge` counts before it deletes (a dry run, a question on a terminal), and `check` probes
the ledger it names."""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bridge.cli import cli
from bridge.ledger import Ledger, NewDelivery
from bridge.ledger.database import normalize_url
from bridge.ledger.tables import deliveries

MAIN = [sys.executable, "-c", "from bridge.cli import main; main()"]


def run(args: list[str], env: dict[str, str], input: str | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, input=input, catch_exceptions=False)


def ledger_env(url: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "MEETBIT_BASE_URL": "", "MEETBIT_ACCESS_KEY_ID": ""}


def one_error_line(result: Result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "unexpected" not in line, line
    return line


# -- since, keys and ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31", "36501d"]
)
@pytest.mark.parametrize("command", [["deliveries", "list"], ["deliveries", "replay", "--yes"]])
def test_a_since_outside_the_range_is_a_usage_error(
    database_url: str, command: list[str], since: str
) -> None:
    env = {
        **ledger_env(database_url),
        "MEETBIT_BASE_URL": "http://127.0.0.1:9",
        "MEETBIT_ACCESS_KEY_ID": "k",
        "MEETBIT_ACCESS_KEY_SECRET": "s",
    }
    line = one_error_line(run([*command, "--since", since], env))
    assert "--since" in line


@pytest.mark.parametrize("key", ["k\udcff", "a\udcff@example.com", "k\tk", "\x1b[31mk"])
def test_a_key_no_ledger_can_hold_is_named(database_url: str, key: str) -> None:
    # Bytes that are not UTF-8 in argv reach Python as lone surrogates (surrogateescape).
    for args in (["links", "set", key, "1", "2"], ["links", "delete", key]):
        assert "key" in one_error_line(run(args, ledger_env(database_url)))


@pytest.mark.parametrize("delivery_id", ["dlv_\udcff", "d" * 41, "dlv x"])
def test_an_id_no_delivery_can_have_is_not_found(database_url: str, delivery_id: str) -> None:
    line = one_error_line(run(["deliveries", "show", delivery_id], ledger_env(database_url)), 1)
    assert "no delivery" in line


def test_a_route_filter_no_route_can_have_is_named(database_url: str) -> None:
    line = one_error_line(
        run(["deliveries", "list", "--route", "zap\udcff"], ledger_env(database_url))
    )
    assert "route" in line


# -- db purge -----------------------------------------------------------------------------------


def old_final_deliveries(url: str, count: int, *, days: int) -> None:
    ledger = Ledger(url)
    try:
        rows = [
            NewDelivery(route="r", idempotency_key=f"k{i}", status="ignored", outcome="ignored")
            for i in range(count)
        ]
        recorded = [d.id for d, _ in ledger.deliveries.record(rows)]
        ledger.deliveries.record([NewDelivery(route="r", idempotency_key="new")])
        past = datetime.now(UTC) - timedelta(days=days)
        with ledger.db.write() as conn:
            conn.execute(
                sa.update(deliveries).where(deliveries.c.id.in_(recorded)).values(created_at=past)
            )
    finally:
        ledger.dispose()


def stored(url: str) -> int:
    ledger = Ledger(url)
    try:
        return sum(ledger.queries.counts_by_status().values())
    finally:
        ledger.dispose()


def test_purge_dry_run_counts_and_deletes_nothing(database_url: str) -> None:
    old_final_deliveries(database_url, 3, days=40)
    result = run(["db", "purge", "--dry-run"], ledger_env(database_url))
    assert result.exit_code == 0, result.output
    assert result.stdout == "would purge 3 deliveries older than 30 days (dry run)\n"
    assert stored(database_url) == 4
    assert run(["db", "purge", "--days", "50", "--dry-run"], ledger_env(database_url)).stdout == (
        "would purge 0 deliveries older than 50 days (dry run)\n"
    )
    # Without a terminal (cron, CI) nothing is asked.
    assert run(["db", "purge"], ledger_env(database_url)).stdout == (
        "purged 3 deliveries older than 30 days\n"
    )
    assert stored(database_url) == 1


@pytest.mark.parametrize("days", ["0", "-1"])
def test_purge_refuses_to_keep_no_days(database_url: str, days: str) -> None:
    assert "--days" in one_error_line(
        run(["db", "purge", "--days", days], ledger_env(database_url))
    )
    assert "--days" in one_error_line(
        run(["db", "purge", "--days", days, "--dry-run"], ledger_env(database_url))
    )


def on_a_terminal(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """Run the command with a terminal as its stdin (as an operator's shell gives it)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*MAIN, *args],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        os.write(controller, answer)
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, output.decode()


def test_purge_asks_on_a_terminal(sqlite_url: str) -> None:
    assert run(["db", "upgrade"], ledger_env(sqlite_url)).exit_code == 0
    old_final_deliveries(sqlite_url, 2, days=40)
    env = {"DATABASE_URL": sqlite_url}
    code, output = on_a_terminal(["db", "purge"], env, b"n\n")
    assert code == 1 and "Delete 2 final deliveries older than 30 days? [y/N]" in output
    assert "Aborted" in output and stored(sqlite_url) == 3
    code, output = on_a_terminal(["db", "purge", "--yes"], env, b"")
    assert code == 0 and "?" not in output
    assert "purged 2 deliveries older than 30 days" in output and stored(sqlite_url) == 1


# -- check probes the ledger ---------------------------------------------------------------------

ROUTES = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.c }}", event_id: "{{ payload.e }}"}
    note: bye
"""


def check(tmp_path: Path, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    base = {
        "PATH": "/usr/bin:/bin",
        "MEETBIT_BASE_URL": "https://acme.example.com",
        "MEETBIT_ACCESS_KEY_ID": "MBP-1",
        "MEETBIT_ACCESS_KEY_SECRET": "s",
        "BRIDGE_CONFIG": str(config),
        "ZAP_TOKEN": "t",
    }
    return subprocess.run(
        [*MAIN, "check"],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_names_a_sqlite_ledger_by_its_absolute_path(
    tmp_path: Path, database_url: str
) -> None:
    result = check(tmp_path, DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("ledger: ")]
    assert line.endswith(": schema up to date")
    if database_url.startswith("sqlite"):
        assert line == f"ledger: SQLite {tmp_path / 'ledger.db'}: schema up to date"
    else:
        name = database_url.rsplit("/", 1)[-1]
        assert line.startswith(f"ledger: PostgreSQL database {name!r} on 127.0.0.1:5432")
        assert "postgres@" not in result.stdout


def test_check_resolves_a_relative_sqlite_path_and_creates_nothing(tmp_path: Path) -> None:
    result = check(tmp_path, cwd=tmp_path, DATABASE_URL="sqlite:///data/ledger.db")
    assert result.returncode == 0, result.stderr
    assert f"ledger: SQLite {tmp_path / 'data/ledger.db'}: not created yet" in result.stdout
    assert not (tmp_path / "data").exists()


def test_check_fails_on_a_postgresql_ledger_without_schema(tmp_path: Path, pg_url: str) -> None:
    result = check(tmp_path, DATABASE_URL=pg_url)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the ledger database on 127.0.0.1:5432: ")
    assert "run `meetbit-bridge db upgrade`" in line


def test_check_fails_on_an_older_postgresql_schema(tmp_path: Path, pg_migrated_url: str) -> None:
    engine = sa.create_engine(normalize_url(pg_migrated_url))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE bridge_alembic_version SET version_num = '0001'"))
    engine.dispose()
    result = check(tmp_path, DATABASE_URL=pg_migrated_url)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "older schema" in line and "meetbit-bridge db upgrade" in line


def test_check_fails_on_an_unreachable_ledger(tmp_path: Path) -> None:
    result = check(tmp_path, DATABASE_URL="postgresql://bridge:pw-s3cr3t@127.0.0.1:1/ledger")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot reach the ledger database on 127.0.0.1:1: ")
    assert "pw-s3cr3t" not in result.stdout + result.stderr


def test_check_fails_on_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    result = check(tmp_path, DATABASE_URL=f"sqlite:///{garbage}")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the SQLite ledger {garbage}: ")
    assert "not a database" in line


def test_a_sqlite_ledger_without_schema_is_migrated_on_start_not_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    result = check(tmp_path, DATABASE_URL=f"sqlite:///{empty}")
    assert result.returncode == 0, result.stderr
    assert f"ledger: SQLite {empty}: schema missing or older" in result.stdout
