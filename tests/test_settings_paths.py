"""The default ledger (`sqlite:///instance/bridge.db`, DATABASE_URL unset) is one file, in the
directory the bridge runs from: commands run from elsewhere name the file they did not find
instead of making a second, empty ledger, and `check` names the file it uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.settings import DEFAULT_DATABASE_URL, Settings

MAIN = [sys.executable, "-c", "from bridge.cli import main; main()"]


@pytest.mark.parametrize(
    ("environ", "default"),
    [({}, True), ({"DATABASE_URL": "  "}, True), ({"DATABASE_URL": "sqlite:///x.db"}, False)],
)
def test_the_settings_say_whether_the_ledger_is_the_default(
    environ: dict[str, str], default: bool
) -> None:
    settings = Settings.from_env(environ, require_meetbit=False)
    assert settings.default_ledger is default
    if default:
        assert settings.database_url == DEFAULT_DATABASE_URL


def meetbit_bridge(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MAIN, *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},  # no DATABASE_URL: the default ledger
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory whose default ledger exists and holds one link."""
    root = tmp_path / "project"
    root.mkdir()
    assert meetbit_bridge(root, "db", "upgrade").returncode == 0
    assert meetbit_bridge(root, "links", "set", "ada@example.com", "12", "345").returncode == 0
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["links", "list"],
        ["links", "set", "k", "1", "2"],
        ["links", "delete", "k"],
        ["deliveries", "list"],
        ["deliveries", "show", "dlv_x"],
        ["db", "purge", "--dry-run"],
        ["db", "purge"],
    ],
)
def test_from_another_directory_no_second_ledger_is_made(
    project: Path, tmp_path: Path, args: list[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = meetbit_bridge(elsewhere, *args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: no ledger at {elsewhere / 'instance/bridge.db'}: ")
    assert "set DATABASE_URL" in line
    assert list(elsewhere.iterdir()) == []  # not even the instance folder
    # From the project directory the same command finds the one ledger.
    assert "no ledger at" not in meetbit_bridge(project, *args).stderr


def test_the_project_directory_sees_its_ledger(project: Path) -> None:
    listed = meetbit_bridge(project, "links", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ada@example.com  12        345" in listed.stdout


def test_check_names_the_default_ledger_file(project: Path, tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("routes: {}\n")
    env = {
        "MEETBIT_BASE_URL": "https://acme.example.com",
        "MEETBIT_ACCESS_KEY_ID": "MBP-1",
        "MEETBIT_ACCESS_KEY_SECRET": "s",
        "BRIDGE_CONFIG": str(config),
    }
    here = meetbit_bridge(project, "check", **env)
    assert here.returncode == 0, here.stderr
    assert (
        f"ledger: SQLite {project / 'instance/bridge.db'} (the default: DATABASE_URL is not set)"
        ": schema up to date"
    ) in here.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    there = meetbit_bridge(elsewhere, "check", **env)
    assert there.returncode == 0, there.stderr
    assert f"ledger: SQLite {elsewhere / 'instance/bridge.db'} (the default" in there.stdout
    assert "not created yet" in there.stdout
    assert list(elsewhere.iterdir()) == []
