"""`meetbit-bridge demo`: the sandbox and the bridge as real HTTP servers on loopback.

Starts the MeetBit sandbox, runs the bridge under gunicorn with a temporary SQLite ledger and a
route per preset, sends correctly signed sample webhooks, prints a table and exits 0 only when
every outcome is the expected one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from bridge.demo.samples import Sample, SampleCall, demo_samples
from bridge.sandbox import SandboxConfig

ADMIN_TOKEN = "demo-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Generous: gunicorn imports the app in each worker, and a cold machine is slow.
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class GunicornServer:
    """A WSGI app under real gunicorn (gthread): the bridge as the Procfile runs it, or the
    sandbox (one worker, so that one process holds its state)."""

    env: Mapping[str, str]
    app: str = "bridge:create_app()"
    ready_path: str = "/readyz"
    workers: int = 2
    threads: int = 8
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", self.app,
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", "gthread",
            "--threads", str(self.threads),
            "--timeout", "30",
            "--graceful-timeout", "5",
        ]  # fmt: skip

    def start(self) -> GunicornServer:
        env = {**os.environ, **self.env}
        if self.log_path:
            # Popen duplicates the descriptor, so the file can be closed right away.
            with open(self.log_path, "ab") as out:
                self.process = subprocess.Popen(
                    self.command(), env=env, stdout=out, stderr=subprocess.STDOUT
                )
        else:
            self.process = subprocess.Popen(
                self.command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                if requests.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.app} was not ready within {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Row:
    route: str
    label: str
    expected: str
    got: str
    calendar_id: int | None
    event_id: int | None
    ms: float
    delivery_id: str | None = None
    final: str = "-"  # where a 202 ended once the worker delivered it

    @property
    def ok(self) -> bool:
        queued_ok = not self.got.startswith("202") or self.final == "succeeded"
        return self.expected == self.got and queued_ok


def _outcome(response: requests.Response) -> str:
    """`<status> <outcome or reason>[ replayed]`; SOAP answers (Salesforce) show their Ack."""
    replayed = " replayed" if response.headers.get("Idempotent-Replayed") == "true" else ""
    if "xml" in response.headers.get("Content-Type", ""):
        acked = "<Ack>true</Ack>" in response.text
        return f"{response.status_code} {'ack' if acked else 'fault'}{replayed}"
    try:
        body: Any = response.json()
    except ValueError:
        return f"{response.status_code} ?"
    word = body.get("outcome") or body.get("reason") or ""
    return f"{response.status_code} {word}{replayed}".replace("  ", " ").strip()


def _first_delivery(response: requests.Response) -> dict[str, Any]:
    try:
        items = response.json().get("deliveries") or [{}]
    except (ValueError, AttributeError):
        return {}
    first: dict[str, Any] = items[0]
    return first


@contextmanager
def running_demo(
    samples: list[Sample], workdir: Path
) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    routes: dict[str, Any] = {}
    env: dict[str, str] = {}
    for sample in samples:
        routes[sample.route] = sample.route_config
        env.update(sample.env)
    config = workdir / "bridge.yaml"
    config.write_text(yaml.safe_dump({"routes": routes}, sort_keys=False))
    keys = SandboxConfig()  # the sandbox's default keys and 5 requests/s, like MeetBit's
    sandbox = GunicornServer(
        {},
        app="bridge.sandbox:create_sandbox_app()",
        ready_path="/_sandbox/stats",
        workers=1,
        log_path=workdir / "sandbox.log",
    )
    with sandbox:
        env.update(
            MEETBIT_BASE_URL=sandbox.url,
            MEETBIT_ACCESS_KEY_ID=keys.key_id,
            MEETBIT_ACCESS_KEY_SECRET=keys.key_secret,
            BRIDGE_CONFIG=str(config),
            DATABASE_URL=f"sqlite:///{workdir / 'ledger.db'}",
            BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        with GunicornServer(env, log_path=workdir / "gunicorn.log") as server:
            worker = subprocess.Popen(
                [sys.executable, "-c", "from bridge.cli import main; main()", "worker"],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                yield sandbox, server
            finally:
                worker.terminate()
                worker.wait(timeout=15)


def run_calls(server: GunicornServer, samples: list[Sample]) -> list[Row]:
    rows = []
    with requests.Session() as http:
        for sample in samples:
            for call in sample.calls:
                rows.append(_send(http, server, sample, call))
    return rows


def _send(http: requests.Session, server: GunicornServer, sample: Sample, call: SampleCall) -> Row:
    url = f"{server.url}/hooks/{sample.route}"
    for method, path, payload in call.before:
        # Setup through the admin API, e.g. a link for a `target.link` route.
        http.request(method, server.url + path, json=payload, headers=ADMIN, timeout=10)
    body, headers = call.build(url)
    started = time.perf_counter()
    response = http.post(url, data=body, headers=headers, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    first = _first_delivery(response)
    return Row(
        sample.route,
        call.label,
        call.expect,
        _outcome(response),
        first.get("calendar_id"),
        first.get("event_id"),
        elapsed,
        delivery_id=first.get("id"),
    )


def await_queued(server: GunicornServer, rows: list[Row], timeout: float = 30.0) -> None:
    """Follow every 202 through the admin API until the worker has delivered it."""
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        for row in rows:
            if not row.got.startswith("202") or not row.delivery_id:
                continue
            url = f"{server.url}/admin/deliveries/{row.delivery_id}"
            while time.monotonic() < deadline:
                row.final = http.get(url, headers=ADMIN, timeout=10).json().get("status", "?")
                if row.final not in ("pending", "in_flight", "failed"):
                    break
                time.sleep(0.2)


def print_table(rows: list[Row], echo: Callable[[str], None]) -> None:
    headers = ("route", "request", "expected", "got", "then", "calendar/event", "ms", "")
    table = [
        (
            r.route,
            r.label,
            r.expected,
            r.got,
            r.final,
            f"{r.calendar_id}/{r.event_id}" if r.event_id is not None else "-",
            f"{r.ms:.1f}",
            "ok" if r.ok else "MISMATCH",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    for line in [headers, tuple("-" * w for w in widths), *table]:
        echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def run(echo: Callable[[str], None] = print) -> int:
    samples = demo_samples()
    with tempfile.TemporaryDirectory(prefix="meetbit-bridge-demo-") as tmp:
        echo("starting the MeetBit sandbox and the bridge (gunicorn, SQLite ledger) on loopback")
        with running_demo(samples, Path(tmp)) as (sandbox, server):
            echo(f"sandbox {sandbox.url}  bridge {server.url}\n")
            rows = run_calls(server, samples)
            await_queued(server, rows)
            print_table(rows, echo)
            calls = requests.get(sandbox.url + "/_sandbox/stats", timeout=10).json()["calls"]
    bad = [r for r in rows if not r.ok]
    echo(f"\n{len(rows) - len(bad)}/{len(rows)} as expected; MeetBit saw {calls} cancel calls")
    return 1 if bad else 0
