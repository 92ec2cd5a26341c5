"""`meetbit-bridge demo` end to end (real gunicorns, a real worker), what it does when a server
cannot start, and the rules that keep the demo and the test support out of the product.

The demo's requests are checked one by one, in process, by test_presets_e2e.py; here the demo
runs once for real.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import bridge
from bridge.demo import run
from bridge.demo.runner import HEADERS
from bridge.demo.samples import Sample, SampleCall, demo_samples
from bridge.testing import ServerStartError, clean_environ

PACKAGE = Path(bridge.__file__).parent
# Settings a user may have in the shell: none of them may reach the demo's processes.
HOSTILE_ENV = {
    "MEETBIT_RATE_LIMIT": "bad",
    "MEETBIT_BASE_URL": "http://127.0.0.1:9",
    "MEETBIT_ACCESS_KEY_SECRET": "not-the-sandbox-secret",
    "BRIDGE_CONFIG": "/nonexistent/bridge.yaml",
    "BRIDGE_SYNC_DEADLINE": "-1",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
    "PROMETHEUS_MULTIPROC_DIR": "/nonexistent/metrics",
    "GUNICORN_CMD_ARGS": "--no-such-option",
}


@pytest.mark.slow
def test_the_demo_passes_in_any_environment(tmp_path: Path) -> None:
    """`MEETBIT_RATE_LIMIT=bad meetbit-bridge demo --keep` (and worse) still runs the demo, even
    from a directory holding a gunicorn.conf.py of its own; it prints the console's URL and a
    token, and keeps the console up on its deliveries until Ctrl-C."""
    (tmp_path / "gunicorn.conf.py").write_text("raise SystemExit('the demo read my config')\n")
    demo = subprocess.Popen(
        [sys.executable, "-c", "from bridge.cli import main; main()", "demo", "--keep"],
        cwd=tmp_path,
        env={**os.environ, **HOSTILE_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:  # bounded: the demo follows its deliveries for 30 s at most
            lines.append(line.rstrip("\n"))
            if line.startswith("running until Ctrl-C") or line.startswith("the demo could not"):
                break
        console = next(line.split()[1] for line in lines if line.startswith("console "))
        token = next(line.split()[3] for line in lines if line.startswith("console "))
        with requests.Session() as http:
            assert http.get(f"{console}/login", timeout=10).status_code == 200
            listed = http.get(
                console.removesuffix("/console") + "/admin/deliveries",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert listed.status_code == 200 and listed.json()["deliveries"]
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    lines += rest.splitlines()
    output = "\n".join(lines)
    assert demo.returncode == 0, output
    assert "Traceback" not in output
    header = next(line for line in lines if line.startswith("route "))
    assert header.split() == " ".join(HEADERS).split()  # every column has its label
    calls = [(s.route, c.label) for s in demo_samples() for c in s.calls]
    rows = [line for line in lines if line.endswith("  ok") or "MISMATCH" in line]
    assert len(rows) == len(calls) and "MISMATCH" not in output
    for (route, label), row in zip(calls, rows, strict=True):
        assert row.startswith(route) and f"  {label}  " in row
    summary = next(line for line in lines if "as expected" in line)
    done, total = summary.strip().split(" ", 1)[0].split("/")
    assert done == total == str(len(calls))
    assert lines[-1] == "stopping"


@pytest.mark.slow
def test_a_server_that_cannot_start_shows_the_end_of_its_log() -> None:
    broken = Sample(
        route="broken",
        route_config={"preset": "no-such-preset", "target": {"link": "x"}, "note": "n"},
        env={},
        calls=[SampleCall("never sent", lambda url: (b"{}", {}), "200 canceled")],
    )
    lines: list[str] = []
    assert run(lines.append, samples=[broken]) == 1
    output = "\n".join(lines)
    assert "the demo could not start: bridge:create_app(): gunicorn exited with" in output
    assert "--- the end of its log ---" in output
    # The bridge's own words about the route file, from the worker that failed to boot.
    assert "bridge.yaml.routes.broken.preset: Must be one of" in output
    # gunicorn's own last words: "Reason: ..." from its shutdown, or, when the worker's exit
    # reaches the arbiter while it is still starting (a race inside gunicorn), the traceback of
    # the same HaltServer. Either way the tail names it.
    assert "Worker failed to boot." in output.rsplit("--- the end of its log ---", 1)[1]


def test_children_get_only_the_settings_they_are_given() -> None:
    inherited = {**HOSTILE_ENV, "BRIDGE_ADMIN_TOKEN": "x", "PATH": "/bin", "HOME": "/root"}
    env = clean_environ({"MEETBIT_BASE_URL": "http://127.0.0.1:8090"}, base=inherited)
    assert env == {"PATH": "/bin", "HOME": "/root", "MEETBIT_BASE_URL": "http://127.0.0.1:8090"}


def test_a_start_error_carries_the_tail_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    error = ServerStartError("app: gunicorn exited with 3", log)
    assert error.log_tail.splitlines() == [f"line {i}" for i in range(60, 100)]
    assert str(error).startswith("app: gunicorn exited with 3\n--- the end of its log ---\n")
    assert "line 59" not in str(error) and str(error).endswith("line 99")
    empty = ServerStartError("app was not ready", tmp_path / "missing.log")
    assert empty.log_tail == "" and "(the log is empty)" in str(empty)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_product_module_imports_the_demo_or_the_test_support() -> None:
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        part = path.relative_to(PACKAGE).parts[0]
        if part in ("demo", "testing"):
            continue
        # The CLI's `demo` command runs the demo; nothing else of the product may.
        support = ("bridge.testing",) if part == "cli" else ("bridge.demo", "bridge.testing")
        checked += 1
        for name in imported_modules(path):
            assert not name.startswith(support), f"{path} imports {name}"
    assert checked > 30
    # The test support needs nothing of the product either.
    for path in (PACKAGE / "testing").rglob("*.py"):
        assert not any(
            n.startswith("bridge.") and not n.startswith("bridge.testing")
            for n in imported_modules(path)
        ), path
