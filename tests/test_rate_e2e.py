"""MeetBit's whole tenant in use, end to end: the bridge under gunicorn and a worker process
share one client's limit (5/s) while another app of the same tenant takes 3 of the tenant's 8
calls a second. MeetBit answers in the current draft's header form, counted per calendar second
with the strict check: the bridge never meets a 429, never has more than its limit in any
calendar second, and the tenant never more than its own."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer
from tests.test_flow_e2e import (
    CALENDAR,
    env_for,
    ledger_at,
    outcome,
    post_hook,
    running,
    start_worker,
    wait_for,
    wait_for_worker,
)

pytestmark = pytest.mark.slow

CLIENT, TENANT, OTHER_APP = 5, 8, 3


def test_the_tenant_shared_with_another_app_is_used_whole_and_never_exceeded(
    tmp_path: Path,
) -> None:
    count = 100
    events = range(20_000, 20_000 + count)
    config = SandboxConfig(
        rate_limit=CLIENT, tenant_limit=TENANT, other_app_rate=OTHER_APP, headers="draft"
    )
    with ExitStack() as stack:
        sandbox = stack.enter_context(SandboxServer(config))
        env = env_for(sandbox, tmp_path)  # MEETBIT_RATE_LIMIT unset: auto
        server = stack.enter_context(
            GunicornServer(env, workers=2, threads=8, log_path=tmp_path / "gunicorn.log")
        )
        stack.enter_context(running(start_worker(env, tmp_path / "worker.log")))
        ledger = stack.enter_context(ledger_at(env["DATABASE_URL"]))
        wait_for_worker(ledger)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda e: outcome(post_hook(server.url, "zap", e)), events))
        assert set(answers) <= {"200 canceled", "202 queued"}, sorted(set(answers))
        wait_for(
            lambda: ledger.queries.counts_by_status()["succeeded"] == count,
            count / CLIENT + 30 - (time.monotonic() - started),
            f"all {count} deliveries to succeed ({ledger.queries.counts_by_status()})",
        )
        stats = sandbox.stats()

    key = config.key_id
    assert stats["rate_limited"] == 0 and stats["other_app"]["rate_limited"] == 0
    assert stats["cancels"] == {f"{CALENDAR}/{e}": 1 for e in events}
    assert stats["max_in_calendar_second"] == {key: CLIENT}
    assert stats["tenant_max_in_calendar_second"] <= TENANT
    # The whole of the client's budget in use: the full seconds of the drain (first and last
    # are partial) hold the limit, nearly every one of them.
    seconds = sorted(stats["per_second"][key].items())[1:-1]
    full = sum(1 for _, n in seconds if n == CLIENT)
    print(
        f"\ntenant: {count} cancels, {len(seconds)} whole seconds, {full} with {CLIENT} calls; "
        f"other app {stats['other_app']['calls']} calls; 0 x 429"
    )
    assert full >= 0.9 * len(seconds)
