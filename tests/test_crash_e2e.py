"""kill -9 during a burst: under real gunicorn with a real worker process, random web workers
and the worker process are SIGKILLed at random moments while 300 mixed sync and ack webhooks
arrive. Senders retry what got no 2xx, as every sender does. Every webhook ends answered 2xx
and its event canceled exactly once at the sandbox; none twice, none lost. On SQLite and
PostgreSQL, with a fixed seed per run so that a failure reproduces.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from bridge.ledger import Ledger
from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer
from tests.test_flow_e2e import (
    AUTH,
    CALENDAR,
    PROCESS_EXIT,
    env_for,
    ledger_at,
    start_worker,
    wait_for,
    wait_for_worker,
)

pytestmark = pytest.mark.slow

COUNT = 300
FIRST_EVENT = 40_000
RATE = 25  # MeetBit's limit here: the 150 sync calls take ~6 s, long enough to meet several kills
# A sender gives up after this; far beyond a lease (slot + connect + read + margin = 14 s).
SENDER_PATIENCE = 90.0
SENDER_ANSWERS = {"200 canceled", "200 already_canceled", "202 queued"}


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (gunicorn's web workers), read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def send_until_answered(url: str, event_id: int, seed: int) -> str:
    """One sender: half the events on the sync route, half on the ack route; a connection cut
    by a kill, a 5xx or a 409 is sent again with the same body (the same idempotency key)."""
    route = "zap" if event_id % 2 else "zap-ack"
    body = {"calendar_id": CALENDAR, "event_id": event_id}
    pause = random.Random(seed * 1_000_003 + event_id)
    deadline = time.monotonic() + SENDER_PATIENCE
    last = "nothing"
    while time.monotonic() < deadline:
        try:
            response = requests.post(f"{url}/hooks/{route}", json=body, headers=AUTH, timeout=20)
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            last = f"{response.status_code} {response.json().get('outcome')}"
            if response.status_code < 300:
                return last
        time.sleep(pause.uniform(0.1, 0.5))
    return f"gave up after {last}"


class Chaos:
    """Kills a random web worker or the worker process every 0.3-1.2 s (seeded), and starts the
    worker process again a moment after each kill, until stopped."""

    def __init__(self, seed: int, server: GunicornServer, env: dict[str, str], logs: Path):
        self.rng = random.Random(seed)
        self.server, self.env, self.logs = server, env, logs
        self.worker = self._start_worker()
        self.kills = {"web": 0, "worker": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _start_worker(self) -> subprocess.Popen[bytes]:
        return start_worker(self.env, self.logs / "worker.log")

    def _run(self) -> None:
        assert self.server.process is not None
        while not self._stop.wait(self.rng.uniform(0.3, 1.2)):
            web = children(self.server.process.pid)
            if self.rng.random() < 0.6 and web:
                os.kill(self.rng.choice(web), signal.SIGKILL)
                self.kills["web"] += 1
            else:
                self.worker.kill()
                self.worker.wait(timeout=PROCESS_EXIT)
                self.kills["worker"] += 1
                time.sleep(self.rng.uniform(0.0, 1.0))
                self.worker = self._start_worker()

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PROCESS_EXIT)

    def close(self) -> None:
        if self.worker.poll() is None:
            self.worker.kill()
        self.worker.wait(timeout=PROCESS_EXIT)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield request.getfixturevalue("pg_migrated_url")


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_during_a_burst_loses_nothing_and_cancels_once(
    tmp_path: Path, ledger_url: str, seed: int
) -> None:
    events = range(FIRST_EVENT, FIRST_EVENT + COUNT)
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(rate_limit=RATE, latency=0.02)))
        env = env_for(sandbox, tmp_path, DATABASE_URL=ledger_url, MEETBIT_RATE_LIMIT=f"{RATE}/s")
        server = stack.enter_context(
            GunicornServer(env, workers=2, threads=8, log_path=tmp_path / "gunicorn.log")
        )
        ledger: Ledger = stack.enter_context(ledger_at(ledger_url))
        chaos = Chaos(seed, server, env, tmp_path)
        stack.callback(chaos.close)
        wait_for_worker(ledger)

        with chaos, ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda e: send_until_answered(server.url, e, seed), events))
        # The last kill may have been the worker's: the one running now finishes the rest,
        # taking over any lease a killed process held once it has run out.
        wait_for(
            lambda: ledger.queries.counts_by_status().get("succeeded", 0) == COUNT,
            60,
            f"all {COUNT} deliveries to succeed ({ledger.queries.counts_by_status()})",
        )

    assert set(answers) <= SENDER_ANSWERS, sorted(set(answers) - SENDER_ANSWERS)
    assert sum(chaos.kills.values()) >= 3, chaos.kills  # the burst did meet the kills
    assert sandbox.stats()["cancels"] == {f"{CALENDAR}/{e}": 1 for e in events}
    print(f"\nseed {seed}: kills {chaos.kills}; answers {sorted(set(answers))}")
