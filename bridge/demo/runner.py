"""`meetbit-bridge demo`: the sandbox and the bridge as real HTTP servers on loopback.

Starts the MeetBit sandbox and the bridge under gunicorn (with a worker process and a temporary
SQLite ledger, a route per preset), sends correctly signed sample webhooks, follows every
delivery to its final outcome, prints a table and exits 0 only when every row is as expected.
Nothing of the caller's bridge settings reaches these processes (`clean_environ`): the demo runs
the same whatever `MEETBIT_*`, `BRIDGE_*` or `DATABASE_URL` the shell holds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from bridge.demo.credentials import ADMIN_TOKEN
from bridge.demo.samples import NOTHING, Sample, SampleCall, demo_samples
from bridge.sandbox import SandboxConfig
from bridge.testing import GunicornServer, ServerStartError, clean_environ
from bridge.testing.servers import log_tail

__all__ = ["Row", "run", "running_demo"]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FOLLOW_TIMEOUT = 30.0
HEADERS = (
    "route", "request", "expected", "answer", "final outcome", "calendar/event", "latency ms",
    "write-back", "check",
)  # fmt: skip
Echo = Callable[[str], None]


@dataclass
class Row:
    """One request of the demo: what was expected, what was answered, where it ended."""

    route: str
    label: str
    expected: str
    expected_final: str
    got: str
    ms: float
    deliveries: list[str] = field(default_factory=list)
    calendar_id: int | None = None
    event_id: int | None = None
    final: str = NOTHING
    # True when a delivery was still not final when the demo stopped following it.
    unsettled: bool = False
    # The route writes back: each canceled delivery must end with the record it wrote.
    writes_back: bool = False
    # What the write-backs made (the vendor's note, comment or Task ids), or their status.
    written: list[str] = field(default_factory=list)

    @property
    def write_back_ok(self) -> bool:
        if not self.writes_back or "canceled" not in self.final.split(", "):
            return not self.written
        return bool(self.written) and all(w.startswith("#") for w in self.written)

    @property
    def ok(self) -> bool:
        return (
            self.got == self.expected and self.final == self.expected_final and self.write_back_ok
        )

    def cells(self) -> tuple[str, ...]:
        ids = f"{self.calendar_id}/{self.event_id}" if self.event_id is not None else "-"
        check = "ok" if self.ok else "MISMATCH"
        written = ", ".join(self.written) or "-"
        return (
            self.route, self.label, self.expected, self.got, self.final, ids, f"{self.ms:.1f}",
            written, check,
        )  # fmt: skip


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


def _delivery_ids(response: requests.Response) -> list[str]:
    try:
        items = response.json().get("deliveries") or []
    except (ValueError, AttributeError):
        return []
    return [str(item["id"]) for item in items if item.get("id")]


@contextmanager
def running_demo(
    samples: list[Sample], workdir: Path
) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """The sandbox and the bridge under gunicorn, plus a worker; yields (sandbox, bridge)."""
    env: dict[str, str] = {}
    for sample in samples:
        env.update(sample.env)
    config = workdir / "bridge.yaml"
    keys = SandboxConfig()  # the sandbox's default keys and 5 requests/s, like MeetBit's
    sandbox = GunicornServer(
        {},
        app="bridge.sandbox:create_sandbox_app()",
        ready_path="/_sandbox/stats",
        workers=1,
        log_path=workdir / "sandbox.log",
        cwd=workdir,
    )
    with sandbox:
        config.write_text(
            yaml.safe_dump({"routes": _routes(samples, sandbox.url)}, sort_keys=False)
        )
        env.update(
            MEETBIT_BASE_URL=sandbox.url,
            MEETBIT_ACCESS_KEY_ID=keys.key_id,
            MEETBIT_ACCESS_KEY_SECRET=keys.key_secret,
            BRIDGE_CONFIG=str(config),
            DATABASE_URL=f"sqlite:///{workdir / 'ledger.db'}",
            BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        bridge = GunicornServer(env, log_path=workdir / "bridge.log", cwd=workdir)
        with bridge, open(workdir / "worker.log", "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-c", "from bridge.cli import main; main()", "worker"],
                env=clean_environ(env),
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield sandbox, bridge
            finally:
                worker.terminate()
                worker.wait(timeout=15)


def _routes(samples: list[Sample], sandbox_url: str) -> dict[str, Any]:
    """The route file: each sample's route, its write-back pointed at the sandbox's fake."""
    routes: dict[str, Any] = {}
    for sample in samples:
        config = dict(sample.route_config)
        if sample.write_back is not None:
            entry = dict(sample.write_back)
            entry["base_url"] = f"{sandbox_url}/{entry.pop('vendor')}"
            config["write_back"] = [entry]
        routes[sample.route] = config
    return routes


def send_calls(server: GunicornServer, samples: list[Sample]) -> list[Row]:
    """Every sample request, in order; a row per request."""
    rows = []
    with requests.Session() as http:
        for sample in samples:
            for call in sample.calls:
                rows.append(_send(http, server, sample, call))
            _find_unlisted(http, server, [r for r in rows if r.route == sample.route])
    return rows


def _send(http: requests.Session, server: GunicornServer, sample: Sample, call: SampleCall) -> Row:
    url = f"{server.url}/hooks/{sample.route}"
    for method, path, payload in call.before:
        # Setup through the admin API, e.g. a link for a `target.link` route.
        setup = http.request(method, server.url + path, json=payload, headers=ADMIN, timeout=10)
        setup.raise_for_status()
    body, headers = call.build(url)
    started = time.perf_counter()
    response = http.post(url, data=body, headers=headers, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    return Row(
        sample.route,
        call.label,
        call.expect,
        call.final,
        _outcome(response),
        elapsed,
        deliveries=_delivery_ids(response),
        writes_back=sample.write_back is not None,
    )


def _find_unlisted(http: requests.Session, server: GunicornServer, rows: list[Row]) -> None:
    """A SOAP answer (Salesforce) lists no deliveries: take the route's from the admin API."""
    listed = {d for row in rows for d in row.deliveries}
    for row in rows:
        if row.deliveries or not row.got.startswith("200 ack"):
            continue
        answer = http.get(
            f"{server.url}/admin/deliveries",
            params={"route": row.route, "limit": "200"},
            headers=ADMIN,
            timeout=10,
        )
        found = [str(d["id"]) for d in answer.json()["deliveries"]]
        row.deliveries = [d for d in found if d not in listed]
        listed.update(row.deliveries)


def follow(server: GunicornServer, rows: list[Row], timeout: float = FOLLOW_TIMEOUT) -> None:
    """Follow every row's deliveries through the admin API until each is final (a queued one
    once the worker has delivered it); one that is not final by the deadline shows its status."""
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        for row in rows:
            ends = []
            for delivery_id in row.deliveries:
                url = f"{server.url}/admin/deliveries/{delivery_id}"
                delivery = _until_final(http, url, deadline)
                if delivery.get("final"):
                    ends.append(delivery["outcome"])
                else:
                    ends.append(delivery["status"])
                    row.unsettled = True
                if row.event_id is None and delivery.get("event_id") is not None:
                    row.calendar_id, row.event_id = delivery["calendar_id"], delivery["event_id"]
                if row.writes_back and delivery.get("outcome") == "canceled":
                    delivery = _until_written(http, url, deadline)
                for job in delivery.get("write_backs") or []:
                    done = job["status"] == "succeeded"
                    row.written.append(f"#{job['created_id']}" if done else job["status"])
            row.final = ", ".join(sorted(ends)) if ends else NOTHING


def _until_final(http: requests.Session, url: str, deadline: float) -> dict[str, Any]:
    while True:
        delivery: dict[str, Any] = http.get(url, headers=ADMIN, timeout=10).json()
        if delivery.get("final") or time.monotonic() >= deadline:
            return delivery
        time.sleep(0.2)


def _until_written(http: requests.Session, url: str, deadline: float) -> dict[str, Any]:
    """The delivery once the worker has made its write-backs (or at the deadline)."""
    while True:
        delivery: dict[str, Any] = http.get(url, headers=ADMIN, timeout=10).json()
        jobs = delivery.get("write_backs") or []
        settled = jobs and all(j["status"] in ("succeeded", "dead") for j in jobs)
        if settled or time.monotonic() >= deadline:
            return delivery
        time.sleep(0.2)


def print_table(rows: list[Row], echo: Echo) -> None:
    table = [row.cells() for row in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(HEADERS, *table, strict=True)]
    for line in [HEADERS, tuple("-" * w for w in widths), *table]:
        echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    for row in rows:
        if not row.ok:
            echo(
                f"MISMATCH {row.route} / {row.label}: expected {row.expected!r} ending "
                f"{row.expected_final!r}, got {row.got!r} ending {row.final!r}"
                + ("" if row.write_back_ok else f"; write-back {', '.join(row.written) or '-'}")
            )


def run(echo: Echo = print, samples: list[Sample] | None = None, *, keep: bool = False) -> int:
    """The whole demo; 0 when every row is as expected, 1 otherwise (or when a server or the
    worker could not start: their logs' tails say why). `keep`: once the table is printed, the
    servers keep running, their deliveries browsable in the console, until Ctrl-C."""
    samples = demo_samples() if samples is None else samples
    with tempfile.TemporaryDirectory(prefix="meetbit-bridge-demo-") as tmp:
        workdir = Path(tmp)
        echo("starting the MeetBit sandbox and the bridge (gunicorn, SQLite ledger) on loopback")
        try:
            with running_demo(samples, workdir) as (sandbox, server):
                echo(f"sandbox {sandbox.url}  bridge {server.url}")
                console = f"{server.url}/console"
                echo(f"console {console}  token {ADMIN_TOKEN}\n")
                rows = send_calls(server, samples)
                follow(server, rows)
                stats = requests.get(sandbox.url + "/_sandbox/stats", timeout=10).json()
                bad = _report(rows, stats, workdir, echo)
                if keep:
                    echo(f"\nthe console stays up at {console} (token {ADMIN_TOKEN})")
                    _wait_for_interrupt(echo)
        except ServerStartError as exc:
            echo(f"\nthe demo could not start: {exc}")
            return 1
    return 1 if bad else 0


def _report(rows: list[Row], stats: dict[str, Any], workdir: Path, echo: Echo) -> list[Row]:
    print_table(rows, echo)
    if any(row.unsettled for row in rows):
        echo(f"\n--- the end of the worker's log ---\n{log_tail(workdir / 'worker.log')}")
    bad = [r for r in rows if not r.ok]
    calls = stats["calls"]
    echo(f"\n{len(rows) - len(bad)}/{len(rows)} as expected; MeetBit saw {calls} cancel calls")
    return bad


def _wait_for_interrupt(echo: Echo) -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM; then the servers stop as the demo's block ends."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    echo("running until Ctrl-C")
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    echo("stopping")
