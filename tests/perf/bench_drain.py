"""How close `meetbit-bridge worker` drains a backlog to MeetBit's allowed rate, and writes
the outcomes back to HubSpot at HubSpot's, without a 429 from either.

Run from the repository root: `python tests/perf/bench_drain.py [--n 100]`. N deliveries are
queued through a `respond: ack` route with a `hubspot-note` write-back (the bridge under
gunicorn, SQLite ledger), then drained by `meetbit-bridge worker --until-idle` (one process,
then two) against the MeetBit sandbox at its default 5 requests/s and the HubSpot fake at its
100 requests per 10 s, on loopback. A note can only follow its cancel, so at 5/s MeetBit is
the bottleneck; a last run lets MeetBit go at 50/s, where HubSpot's limit is.
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
from bridge.sandbox.vendors import HubSpotFake
from bridge.testing import GunicornServer

TOKEN = "bench-token"
RATE = 5.0
HUBSPOT_TOKEN = "pat-na1-bench"
HUBSPOT_RATE = 100 / 10.0
ROUTES = """
routes:
  queue:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: BENCH_TOKEN}
    respond: ack
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
    write_back:
      - to: hubspot-note
        base_url: HUBSPOT_URL
        token_env: HUBSPOT_TOKEN
        record: "{{ payload.event_id }}"
        text: "Meeting {{ result.event_id }} canceled"
"""
WORKER = [sys.executable, "-c", "from bridge.cli import main; main()", "worker", "--until-idle"]


def _used(times: list[float], rate: float) -> tuple[float, float]:
    """(first-to-last span, the rate achieved over it as a ratio of `rate`)."""
    times = sorted(times)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    # n calls fill n - 1 intervals.
    return span, ((len(times) - 1) / span / rate if span > 0 else 0.0)


def drain(n: int, processes: int, work: Path, rate: float = RATE) -> dict[str, float]:
    work.mkdir()
    with (
        SandboxServer(SandboxConfig(rate_limit=rate)) as sandbox,
        HubSpotFake(token=HUBSPOT_TOKEN) as hubspot,
    ):
        assert hubspot.base_url is not None
        (work / "bridge.yaml").write_text(ROUTES.replace("HUBSPOT_URL", hubspot.base_url))
        env = {
            "MEETBIT_RATE_LIMIT": f"{rate:g}/s",
            "HUBSPOT_TOKEN": HUBSPOT_TOKEN,
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
            codes = [w.wait(timeout=n / min(rate, HUBSPOT_RATE) * 3 + 60) for w in workers]
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
        notes = [r.at for r in hubspot.requests() if r.accepted and r.method == "POST"]
        hubspot_429 = sum(1 for r in hubspot.requests() if r.status == 429)
        hubspot_max = hubspot.max_in_window(10.0)
    span, used = _used(times, rate)
    note_span, note_used = _used(notes, HUBSPOT_RATE)
    return {
        "notes": len(notes),
        "note_span": note_span,
        "hubspot_used": note_used,
        "hubspot_429": hubspot_429,
        "hubspot_max_10s": hubspot_max,
        "codes_ok": float(codes == [0] * processes),
        "succeeded": counts["succeeded"],
        "wall": wall,
        "span": span,
        "calls": stats["calls"],
        "rate_limited": stats["rate_limited"],
        "max_in_second": stats["max_calls_in_any_second"],
        "used": used,
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
        for processes, rate in ((1, RATE), (2, RATE), (1, 50.0)):
            r = drain(args.n, processes, Path(tmp) / f"p{processes}-{rate:g}", rate)
            print(
                f"  {processes} worker process{'es' if processes > 1 else '  '}, MeetBit at "
                f"{rate:g}/s: {int(r['succeeded'])}/{args.n} succeeded, exit 0: "
                f"{bool(r['codes_ok'])}; wall {r['wall']:.1f} s (incl. start-up)\n"
                f"    MeetBit: first-to-last call {r['span']:.1f} s; rate used {r['used']:.2f} "
                f"of allowed (target >= 0.90); 429s {int(r['rate_limited'])} (target 0); "
                f"max calls in any second {int(r['max_in_second'])}\n"
                f"    HubSpot: {int(r['notes'])} notes; first-to-last {r['note_span']:.1f} s; "
                f"rate used {r['hubspot_used']:.2f} of allowed 100/10 s; 429s "
                f"{int(r['hubspot_429'])} (target 0); max in any 10 s "
                f"{int(r['hubspot_max_10s'])}"
            )


if __name__ == "__main__":
    main()
