"""Soak: mixed traffic against the bridge under gunicorn for a while, printing what would show a
leak: resident memory and open files of the gunicorn processes, the ledger's size, and answer
latencies, at the start and at the end.

Run from the repository root: `python tests/perf/soak.py [--minutes 10] [--clients 4]`.
Traffic, drawn with a fixed seed: new cancels (30 %), resent duplicates (30 %), webhooks whose
`when` is false (15 %), malformed bodies (15 %) and wrong credentials (10 %), each client
pausing 10 ms between requests. The sandbox runs without latency or rate limit, the bridge with
`MEETBIT_RATE_LIMIT=1000/s`, so that MeetBit's spacing is not what is measured. New cancels are
the only traffic that adds ledger rows: the ledger's growth is reported per new delivery.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer

TOKEN = "soak-token"
ROUTES = """
routes:
  soak:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: SOAK_TOKEN}
    when: "payload.stage == 'lost'"
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by the soak"
"""
HEADERS = {"X-Bridge-Token": TOKEN, "Content-Type": "application/json"}


def process_tree(root: int) -> list[int]:
    """`root` and its children (gunicorn's master and workers)."""
    found = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == root:
                found.append(int(entry.name))
    return found


def footprint(root: int, ledger: Path) -> tuple[float, int, int, int]:
    """Resident MiB and open files of the process tree, the ledger file's bytes, and its
    write-ahead log's (SQLite reuses the WAL after a checkpoint: it does not shrink)."""
    rss = files = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
            files += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            continue
    wal = ledger.with_name(ledger.name + "-wal")
    return rss / 1024, files, ledger.stat().st_size, wal.stat().st_size if wal.exists() else 0


class Traffic:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url + "/hooks/soak"
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.sent_keys: list[str] = []
        self.next_event = 1
        self.new = 0
        self.samples: list[tuple[float, float, int]] = []  # (when, seconds, status)

    def request(self) -> tuple[bytes, dict[str, str]]:
        with self.lock:
            roll = self.random.random()
            if roll < 0.30 or not self.sent_keys:
                key, event = f"k{self.next_event}", self.next_event
                self.next_event += 1
                self.sent_keys.append(key)
                self.new += 1
                body = f'{{"stage":"lost","calendar_id":1,"event_id":{event}}}'
                return body.encode(), {**HEADERS, "Idempotency-Key": key}
            if roll < 0.60:
                key = self.random.choice(self.sent_keys)
                event = int(key[1:])
                body = f'{{"stage":"lost","calendar_id":1,"event_id":{event}}}'
                return body.encode(), {**HEADERS, "Idempotency-Key": key}
            if roll < 0.75:
                return b'{"stage":"open","calendar_id":1,"event_id":1}', HEADERS
            if roll < 0.90:
                return b'{"stage": "lost", "calendar_id": ', HEADERS
            return b'{"stage":"lost","calendar_id":1,"event_id":2}', {
                **HEADERS,
                "X-Bridge-Token": "wrong",
            }

    def client(self, until: float) -> None:
        with requests.Session() as session:
            while time.monotonic() < until:
                body, headers = self.request()
                began = time.monotonic()
                status = session.post(self.url, data=body, headers=headers, timeout=30).status_code
                with self.lock:
                    self.samples.append((began, time.monotonic() - began, status))
                time.sleep(0.01)


def window(samples: list[tuple[float, float, int]], start: float, end: float) -> str:
    times = sorted(s * 1000 for at, s, _ in samples if start <= at < end)
    if not times:
        return "no requests"
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return f"{len(times):6d} requests  p50 {statistics.median(times):6.2f} ms  p99 {p99:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as tmp,
        SandboxServer(SandboxConfig(rate_limit=0)) as sandbox,
    ):
        work = Path(tmp)
        (work / "bridge.yaml").write_text(ROUTES)
        ledger = work / "ledger.db"
        env = {
            "MEETBIT_BASE_URL": sandbox.url,
            "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
            "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
            "MEETBIT_RATE_LIMIT": "1000/s",
            "BRIDGE_CONFIG": str(work / "bridge.yaml"),
            "DATABASE_URL": f"sqlite:///{ledger}",
            "SOAK_TOKEN": TOKEN,
        }
        with GunicornServer(env, log_path=work / "bridge.log") as bridge:
            assert bridge.process is not None
            traffic = Traffic(bridge.url, args.seed)
            began = time.monotonic()
            until = began + args.minutes * 60
            minute = min(60.0, args.minutes * 60 / 3)
            start_print = None
            threads = [
                threading.Thread(target=traffic.client, args=(until,)) for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(minute)
            start_print = footprint(bridge.process.pid, ledger)
            new_at_start = traffic.new
            for thread in threads:
                thread.join()
            end_print = footprint(bridge.process.pid, ledger)
            statuses = sorted({status for *_, status in traffic.samples})
    new = traffic.new - new_at_start
    print(f"soak: {args.minutes:g} min, {args.clients} clients, statuses seen {statuses}")
    print(f"  first window  {window(traffic.samples, began, began + minute)}")
    print(f"  last window   {window(traffic.samples, until - minute, until)}")
    for name, (rss, files, size, wal) in (
        ("after 1st window", start_print),
        ("at the end", end_print),
    ):
        print(
            f"  {name:16}  RSS {rss:7.1f} MiB  open files {files:4d}"
            f"  ledger {size:>11,} B  WAL {wal:>11,} B"
        )
    grown = end_print[2] - start_print[2]
    per_delivery = grown / new if new else 0.0
    print(f"  ledger growth {grown:,} B for {new} new deliveries: {per_delivery:,.0f} B each")
    rss_growth, files_growth = end_print[0] - start_print[0], end_print[1] - start_print[1]
    print(f"  RSS growth {rss_growth:+.1f} MiB, open files {files_growth:+d}")
    assert 500 not in statuses, "a 500 was answered"


if __name__ == "__main__":
    main()
