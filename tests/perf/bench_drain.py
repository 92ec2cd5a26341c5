"""How close `meetbit-bridge worker` drains a backlog to MeetBit's allowed rate, without a 429.

Run from the repository root: `python tests/perf/bench_drain.py [--n 100]`. N deliveries are
queued through a `respond: ack` route (the bridge under gunicorn, SQLite ledger), then drained
by `meetbit-bridge worker --until-idle` (one process, then two) against the MeetBit sandbox at
its default 5 requests/s, on loopback. The bridge's MEETBIT_RATE_LIMIT is its default (5/s).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bridge.ledger import Ledger
from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer

TOKEN = "bench-token"
RATE = 5.0
ROUTES = """
routes:
  queue:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: BENCH_TOKEN}
    respond: ack
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
"""
WORKER = [sys.executable, "-c", "from bridge.cli import main; main()", "worker", "--until-idle"]


def drain(n: int, processes: int, work: Path) -> dict[str, float]:
    work.mkdir()
    (work / "bridge.yaml").write_text(ROUTES)
    with SandboxServer(SandboxConfig(rate_limit=RATE)) as sandbox:
        env = {
            "MEETBIT_BASE_URL": sandbox.url,
            "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
            "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
            "BRIDGE_CONFIG": str(work / "bridge.yaml"),
            "DATABASE_URL": f"sqlite:///{work / 'ledger.db'}",
            "BENCH_TOKEN": TOKEN,
        }
        with GunicornServer(env, log_path=work / "gunicorn.log") as bridge:

            def queue(event_id: int) -> int:
                body = {"calendar_id": 1, "event_id": event_id}
                headers = {"X-Bridge-Token": TOKEN}
                url = bridge.url + "/hooks/queue"
                with requests.Session() as http:
                    return http.post(url, json=body, headers=headers, timeout=30).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(queue, range(5000, 5000 + n)))
            assert statuses == [202] * n, set(statuses)

        started = time.monotonic()
        logs = [open(work / f"worker{i}.log", "wb") for i in range(processes)]  # noqa: SIM115
        workers = [
            subprocess.Popen(
                WORKER, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
            for log in logs
        ]
        try:
            codes = [w.wait(timeout=n / RATE * 3 + 60) for w in workers]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
            for log in logs:
                log.close()
        wall = time.monotonic() - started
        ledger = Ledger(env["DATABASE_URL"])
        counts = ledger.queries.counts_by_status()
        ledger.dispose()
        stats = sandbox.stats()
        times = sorted(c["at"] for c in sandbox.calls() if c["status"] != 429)
    span = times[-1] - times[0]
    return {
        "codes_ok": float(codes == [0] * processes),
        "succeeded": counts["succeeded"],
        "wall": wall,
        "span": span,
        "calls": stats["calls"],
        "rate_limited": stats["rate_limited"],
        "max_in_second": stats["max_calls_in_any_second"],
        # n calls fill n - 1 intervals: the rate actually achieved over the drain.
        "used": (len(times) - 1) / span / RATE if span > 0 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="deliveries to drain")
    args = parser.parse_args()
    ideal = args.n / RATE
    print(
        f"draining {args.n} queued deliveries against the sandbox at {RATE:g}/s "
        f"(ideal {ideal:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        for processes in (1, 2):
            r = drain(args.n, processes, Path(tmp) / f"p{processes}")
            print(
                f"  {processes} worker process{'es' if processes > 1 else '  '}: "
                f"{int(r['succeeded'])}/{args.n} succeeded, exit 0: {bool(r['codes_ok'])}; "
                f"wall {r['wall']:.1f} s ({r['wall'] / ideal:.2f} x ideal, incl. start-up), "
                f"first-to-last call {r['span']:.1f} s; rate used {r['used']:.2f} of allowed "
                f"(target >= 0.90); 429s {int(r['rate_limited'])} (target 0); "
                f"max calls in any second {int(r['max_in_second'])}"
            )


if __name__ == "__main__":
    main()
