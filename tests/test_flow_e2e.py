"""End to end with real processes: the bridge under gunicorn, `meetbit-bridge worker` processes
and the MeetBit sandbox on loopback. Nothing is lost, no event is canceled twice, MeetBit's
rate limit is never hit, and a killed or stopped worker leaves nothing stuck.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.ledger import Delivery, Ledger
from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer
from tests.conftest import ZAP_TOKEN, bridge_env

pytestmark = pytest.mark.slow

AUTH = {"X-Bridge-Token": ZAP_TOKEN}
CALENDAR = 7
FIRST_EVENT = 10_000
# The worker's own bound on one attempt is seconds; this only stops a hung process from
# hanging the test run.
PROCESS_EXIT = 15.0

FAULT_ROUTES = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
    # A 30 % failure rate with 20 % read timeouts would otherwise kill ~1 % of runs' deliveries
    # after the default 10 attempts: what this test checks is that retries converge.
    max_attempts: 40
"""


# -- helpers ----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`meetbit-bridge worker` as its own process, exactly as the Procfile runs it."""
    command = [sys.executable, "-c", "from bridge.cli import main; main()", "worker", *args]
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def wait_for_worker(ledger: Ledger) -> None:
    # Until its first heartbeat a transient failure is answered 502 (nobody would retry it).
    wait_for(
        lambda: ledger.coordination.workers_alive() > 0,
        PROCESS_EXIT,
        "the worker's first heartbeat",
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=PROCESS_EXIT)


@contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        kill(process)


@contextmanager
def ledger_at(url: str) -> Iterator[Ledger]:
    ledger = Ledger(url)
    try:
        yield ledger
    finally:
        ledger.dispose()


def all_deliveries(ledger: Ledger) -> list[Delivery]:
    out: list[Delivery] = []
    cursor: str | None = None
    while True:
        page, cursor = ledger.queries.deliveries(cursor=cursor, limit=500)
        out.extend(page)
        if cursor is None:
            return out


def post_hook(url: str, route: str, event_id: int, timeout: float = 30.0) -> requests.Response:
    body = {"calendar_id": CALENDAR, "event_id": event_id}
    with requests.Session() as http:
        return http.post(f"{url}/hooks/{route}", json=body, headers=AUTH, timeout=timeout)


def outcome(response: requests.Response) -> str:
    try:
        word = response.json().get("outcome")
    except ValueError:
        word = "?"
    return f"{response.status_code} {word}"


def calls_by_event(sandbox: SandboxServer) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for call in sorted(sandbox.calls(), key=lambda c: c["at"]):
        grouped[call["event_id"]].append(call)
    return grouped


def env_for(
    sandbox: SandboxServer, tmp_path: Path, routes: str | None = None, **extra: str
) -> dict[str, str]:
    env = bridge_env(sandbox, tmp_path) if routes is None else bridge_env(sandbox, tmp_path, routes)
    # The bridge's own default rate (5/s, MeetBit's default per Client) unless a test says so.
    env.pop("MEETBIT_RATE_LIMIT")
    env["MEETBIT_TIMEOUT"] = "1,3"  # lease = 5 + 1 + 3 + 5 = 14 s
    env.update(extra)
    return env


# -- a. a burst far above MeetBit's rate ------------------------------------------------------


def test_burst_of_300_is_delivered_once_each_within_the_rate(tmp_path: Path) -> None:
    count = 300
    events = range(FIRST_EVENT, FIRST_EVENT + count)
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(rate_limit=5)))
        env = env_for(sandbox, tmp_path)
        server = stack.enter_context(
            GunicornServer(env, workers=2, threads=8, log_path=tmp_path / "gunicorn.log")
        )
        stack.enter_context(running(start_worker(env, tmp_path / "worker.log")))
        ledger = stack.enter_context(ledger_at(env["DATABASE_URL"]))
        wait_for_worker(ledger)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda e: outcome(post_hook(server.url, "zap", e)), events))
        sent_in = time.monotonic() - started
        assert set(answers) <= {"200 canceled", "202 queued"}, sorted(set(answers))

        bound = count / 5 + 30
        wait_for(
            lambda: ledger.queries.counts_by_status()["succeeded"] == count,
            bound - (time.monotonic() - started),
            f"all {count} deliveries to succeed ({ledger.queries.counts_by_status()})",
        )
        drained_in = time.monotonic() - started

    stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    # Counted as MeetBit counts: per calendar second of arrival, never more than the limit.
    assert stats["max_in_calendar_second"] == {sandbox.config.key_id: 5}
    assert stats["calls"] == count
    assert stats["cancels"] == {f"{CALENDAR}/{e}": 1 for e in events}
    print(
        f"\nburst: {count} webhooks sent in {sent_in:.1f} s "
        f"({answers.count('200 canceled')} answered 200, {answers.count('202 queued')} 202); "
        f"all canceled after {drained_in:.1f} s (ideal {count / 5:.0f} s at 5/s)"
    )


# -- b. MeetBit failing and stalling ----------------------------------------------------------


def test_failures_and_timeouts_converge_without_a_second_cancel(tmp_path: Path) -> None:
    count = 40
    events = range(FIRST_EVENT, FIRST_EVENT + count)
    config = SandboxConfig(
        rate_limit=5, failure_rate=0.3, spike_rate=0.2, spike_latency=1.5, seed=20240607
    )
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(config))
        env = env_for(
            sandbox,
            tmp_path,
            FAULT_ROUTES,
            MEETBIT_TIMEOUT="1,1",  # a 1.5 s spike is a read timeout after MeetBit canceled
            BRIDGE_RETRY_BACKOFF="0.2,2",
        )
        server = stack.enter_context(
            GunicornServer(env, workers=2, threads=8, log_path=tmp_path / "gunicorn.log")
        )
        stack.enter_context(running(start_worker(env, tmp_path / "worker.log")))
        ledger = stack.enter_context(ledger_at(env["DATABASE_URL"]))
        wait_for_worker(ledger)

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda e: post_hook(server.url, "zap", e), events))
        assert all(r.status_code < 500 for r in answers), [outcome(r) for r in answers]
        wait_for(
            lambda: ledger.queries.counts_by_status()["succeeded"] == count,
            90,
            f"all {count} deliveries to succeed ({ledger.queries.counts_by_status()})",
        )
        deliveries = {d.event_id: d for d in all_deliveries(ledger)}
        # Let calls the bridge gave up on (read timeouts) finish at the sandbox.
        wait_for(lambda: all(c["status"] is not None for c in sandbox.calls()), 5, "calls")

    stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["cancels"] == {f"{CALENDAR}/{e}": 1 for e in events}, "canceled twice"
    late_after_200 = 0
    for event_id, calls in calls_by_event(sandbox).items():
        delivery = deliveries[event_id]
        assert delivery.outcome in ("canceled", "already_canceled")
        statuses = [c["status"] for c in calls]
        first_200 = statuses.index(200)
        # The answer the ledger recorded is the one to the last call: nothing was sent after
        # the bridge learned that the event is canceled.
        assert statuses[-1] == delivery.meetbit_status, (event_id, statuses, delivery)
        if delivery.outcome == "canceled":
            assert first_200 == len(statuses) - 1, (event_id, statuses)
        else:
            # MeetBit canceled during a call the bridge had timed out on; the retry met a 404.
            assert set(statuses[first_200 + 1 :]) <= {404, 500}, (event_id, statuses)
            late_after_200 += len(statuses) - first_200 - 1
    outcomes = [d.outcome for d in deliveries.values()]
    print(
        f"\nfaults: {stats['calls']} calls for {count} events {stats['by_status']}; "
        f"{outcomes.count('already_canceled')} recorded as already_canceled after a timed-out "
        f"cancel ({late_after_200} calls arrived after a 200 the bridge never received)"
    )


# -- c. two instances on one PostgreSQL -------------------------------------------------------


def test_two_instances_share_one_postgres_ledger(tmp_path: Path, pg_url: str) -> None:
    count = 50
    events = range(FIRST_EVENT, FIRST_EVENT + count)
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(rate_limit=5)))
        env = env_for(sandbox, tmp_path, DATABASE_URL=pg_url)
        upgrade = subprocess.run(
            [sys.executable, "-c", "from bridge.cli import main; main()", "db", "upgrade"],
            env={**os.environ, **env},
            capture_output=True,
            timeout=60,
        )
        assert upgrade.returncode == 0, upgrade.stderr.decode()
        one = stack.enter_context(GunicornServer(env, log_path=tmp_path / "one.log"))
        two = stack.enter_context(GunicornServer(env, log_path=tmp_path / "two.log"))
        ledger = stack.enter_context(ledger_at(pg_url))

        def twins(event_id: int) -> list[requests.Response]:
            barrier = threading.Barrier(2, timeout=10)

            def send(url: str) -> requests.Response:
                barrier.wait()
                return post_hook(url, "zap", event_id)

            with ThreadPoolExecutor(max_workers=2) as pair:
                return list(pair.map(send, (one.url, two.url)))

        # Five pairs at a time: within the sync deadline at 5 calls/s, so no worker is needed.
        with ThreadPoolExecutor(max_workers=5) as pool:
            pairs = list(pool.map(twins, events))
        deliveries = all_deliveries(ledger)

    answers: list[str] = []
    for pair in pairs:
        shown = []
        for r in pair:
            assert r.status_code < 500, r.text
            replayed = r.headers.get("Idempotent-Replayed") == "true"
            if r.status_code == 409:
                assert int(r.headers["Retry-After"]) > 0
            shown.append(outcome(r) + (" replayed" if replayed else ""))
            assert shown[-1] in {"200 canceled", "200 canceled replayed", "202 queued", "409 None"}
        assert "200 canceled" in shown, shown
        answers.extend(shown)
    stats = sandbox.stats()
    assert stats["calls"] == count
    assert stats["cancels"] == {f"{CALENDAR}/{e}": 1 for e in events}
    assert stats["rate_limited"] == 0
    assert len(deliveries) == count
    assert {d.status for d in deliveries} == {"succeeded"}
    print(f"\ntwo instances: answers {sorted((a, answers.count(a)) for a in set(answers))}")


# -- d. kill -9 while a cancel is on the wire --------------------------------------------------


def test_worker_killed_mid_call_is_finished_by_the_next_one(tmp_path: Path) -> None:
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(rate_limit=5, latency=2)))
        env = env_for(sandbox, tmp_path)
        server = stack.enter_context(GunicornServer(env, workers=1, log_path=tmp_path / "g.log"))
        ledger = stack.enter_context(ledger_at(env["DATABASE_URL"]))
        accepted = post_hook(server.url, "zap-ack", FIRST_EVENT)
        assert outcome(accepted) == "202 queued"
        delivery_id = accepted.json()["delivery_id"]

        first = stack.enter_context(running(start_worker(env, tmp_path / "worker1.log")))
        wait_for(
            lambda: any(c["status"] is None for c in sandbox.calls()), 20, "the call in flight"
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=PROCESS_EXIT)
        killed_at = time.monotonic()
        stuck = ledger.deliveries.get(delivery_id)
        assert stuck is not None and stuck.status == "in_flight"

        stack.enter_context(running(start_worker(env, tmp_path / "worker2.log")))
        # The lease (14 s here) must run out before anyone may claim it again.
        wait_for(
            lambda: (ledger.deliveries.get(delivery_id) or stuck).final,
            40,
            "the delivery to finish",
        )
        done = ledger.deliveries.get(delivery_id)
        recovered_in = time.monotonic() - killed_at

    assert done is not None
    assert done.status == "succeeded"
    assert done.outcome in ("canceled", "already_canceled")
    statuses = [c["status"] for c in sandbox.calls()]
    assert statuses.count(200) == 1, statuses
    assert sandbox.stats()["cancels"] == {f"{CALENDAR}/{FIRST_EVENT}": 1}
    print(f"\nkill -9: {done.outcome} after {recovered_in:.1f} s; sandbox answered {statuses}")


# -- e. SIGTERM -------------------------------------------------------------------------------


def test_sigterm_stops_the_worker_cleanly(tmp_path: Path) -> None:
    count = 30
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(rate_limit=5, latency=0.3)))
        env = env_for(sandbox, tmp_path)
        server = stack.enter_context(GunicornServer(env, workers=1, log_path=tmp_path / "g.log"))
        ledger = stack.enter_context(ledger_at(env["DATABASE_URL"]))
        for event_id in range(FIRST_EVENT, FIRST_EVENT + count):
            assert outcome(post_hook(server.url, "zap-ack", event_id)) == "202 queued"

        worker = stack.enter_context(running(start_worker(env, tmp_path / "worker.log")))
        wait_for(lambda: len(sandbox.calls()) >= 3, 20, "the worker to be delivering")
        worker.send_signal(signal.SIGTERM)
        signaled = time.monotonic()
        code = worker.wait(timeout=PROCESS_EXIT)
        stopped_in = time.monotonic() - signaled
        counts = ledger.queries.counts_by_status()

    assert code == 0
    assert stopped_in < 3.0
    assert counts["in_flight"] == 0
    assert counts["succeeded"] + counts["pending"] == count, counts
    assert counts["pending"] > 0  # released for the next worker, not lost
    # What MeetBit answered is what the ledger holds: no call's result was dropped.
    assert sandbox.stats()["by_status"] == {"200": counts["succeeded"]}
    print(f"\nSIGTERM: exited 0 in {stopped_in:.2f} s; {counts}")
