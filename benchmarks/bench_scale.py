"""The ledger at scale: the cancel, duplicate and ack paths and the admin list on an empty and
on a filled ledger, against a naive Flask->requests proxy and bare Flask, in one run; then a
purge of the filled rows while webhooks keep coming, and the space it gives back.

Run from the repository root (wrk on the PATH: `apt-get install wrk`):

    python benchmarks/bench_scale.py [--rows 1000000 | --ten-million] [--ledgers sqlite,postgres]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 3] [--seconds 5]

Everything is on loopback: the MeetBit sandbox (no latency, no rate limit) in this process,
and under gunicorn with the Procfile's settings (config/gunicorn.conf.py) the bridge on the
empty ledger, the bridge on the filled one, the naive proxy and bare Flask, all up at once.
`MEETBIT_RATE_LIMIT=100000/s` so that MeetBit's own limit is not what is measured (the limiter
still runs). wrk drives 16 connections per figure; every cancel and ack is a new event. Each
round measures every figure once, in the same order, and figures are the median of the
rounds (a shared 2-core machine: the spread is printed beside each).

The filled SQLite ledger is made once per size under --cache (default
~/.cache/meetbit-bridge-bench) and copied for each run; on PostgreSQL the filled database is
kept (`bench_scale_fill_<rows>`) and copied with CREATE DATABASE ... TEMPLATE.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.perf (the Procfile server), benchmarks.*

from benchmarks.prefill import cached_sqlite, prefill  # noqa: E402
from bridge.ledger import Ledger  # noqa: E402
from bridge.ledger.database import normalize_url  # noqa: E402
from bridge.sandbox import SandboxConfig, SandboxServer  # noqa: E402
from tests.perf.bench_core import ProcfileServer  # noqa: E402

TOKEN = "bench-token"
ADMIN = "bench-admin"
ROUTES = """
routes:
  bench:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: BENCH_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
  bench-ack:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: BENCH_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
    respond: ack
"""
# wrk: each request a new (calendar, event): the calendar is the run's, the event the
# thread's counter (the sandbox's events exist below 900,000).
UNIQUE_LUA = """
local counter = 0
local calendar = tonumber(os.getenv("BENCH_CALENDAR"))
local threads = 0
function setup(thread)
  thread:set("offset", threads * 100000)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local body = string.format('{"calendar_id": %d, "event_id": %d}', calendar, offset + counter)
  return wrk.format("POST", nil, nil, body)
end
"""
CONNECTIONS = 16
WRK_THREADS = 2


def wrk(url: str, *, seconds: float, body: str | None, calendar: int) -> dict[str, float]:
    """One wrk run at CONNECTIONS connections: requests/s, p50/p99 ms, and the non-2xx share."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is None:
            script.write(UNIQUE_LUA)
        else:
            script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n")
    try:
        out = subprocess.run(
            [
                "wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS),
                "-d", f"{max(1, round(seconds))}s", "--latency", "-s", script.name,
                "-H", f"X-Bridge-Token: {TOKEN}", "-H", "Content-Type: application/json",
                url,
            ],
            capture_output=True, text=True, check=True, env={**os.environ,
            "BENCH_CALENDAR": str(calendar)},
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*timeout (\d+)", out)

    def pct(q: str) -> float:
        value, unit = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    failed = (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)
    return {"rate": rate, "p50": pct("50"), "p99": pct("99"), "failed": failed / max(1, total)}


class Calendars:
    """A fresh calendar id per run: every event a run cancels is new to the sandbox and to
    every ledger (prefilled cancels use calendars 1..500)."""

    def __init__(self) -> None:
        self.next = 10_000 + int(time.time()) % 100_000 * 100

    def __call__(self) -> int:
        self.next += 1
        return self.next


@contextmanager
def ledgers(kind: str, rows: int, args: argparse.Namespace, work: Path) -> Iterator[dict[str, str]]:
    """An empty and a filled ledger of `kind`: {"empty": url, "filled": url}."""
    if kind == "sqlite":
        empty = work / "empty.db"
        filled = work / "filled.db"
        took = cached_sqlite(rows, Path(args.cache).expanduser(), filled)
        print(
            f"  filled SQLite ledger: {rows:,} rows"
            + (f", prefilled in {took:.0f} s" if took else ", cached")
        )
        urls = {"empty": f"sqlite:///{empty}", "filled": f"sqlite:///{filled}"}
        for url in urls.values():  # a kept filled ledger may predate a migration
            ledger = Ledger(url)
            ledger.ensure_schema()
            ledger.dispose()
        yield urls
        return
    admin = sa.create_engine(normalize_url(args.pg), isolation_level="AUTOCOMMIT")
    base = sa.make_url(normalize_url(args.pg))
    template = f"bench_scale_fill_{rows}"
    names = {
        "empty": f"bench_scale_empty_{os.getpid()}",
        "filled": f"bench_scale_filled_{os.getpid()}",
    }
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template}
            ).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{template}"'))
        if not exists:
            url = base.set(database=template).render_as_string(hide_password=False)
            try:
                took = prefill(url, rows, progress=True)
            except BaseException:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE "{template}" WITH (FORCE)'))
                raise
            print(f"  filled PostgreSQL ledger: {rows:,} rows, prefilled in {took:.0f} s")
        else:
            print(f"  filled PostgreSQL ledger: {rows:,} rows, kept ({template})")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{names["empty"]}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{names["filled"]}" TEMPLATE "{template}"'))
        urls = {
            k: base.set(database=v).render_as_string(hide_password=False) for k, v in names.items()
        }
        for url in urls.values():  # a kept filled ledger may predate a migration
            ledger = Ledger(url)
            ledger.ensure_schema()
            ledger.dispose()
        yield urls
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bridge_env(sandbox: SandboxServer, url: str, work: Path) -> dict[str, str]:
    return {
        "MEETBIT_BASE_URL": sandbox.url,
        "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
        "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
        "MEETBIT_RATE_LIMIT": "100000/s",
        "BRIDGE_CONFIG": str(work / "bridge.yaml"),
        "DATABASE_URL": url,
        "BENCH_TOKEN": TOKEN,
        "BRIDGE_ADMIN_TOKEN": ADMIN,
        "LOG_LEVEL": "warning",
    }


def admin_list_ms(url: str, n: int = 30) -> float:
    """p50 of GET /admin/deliveries (the newest 50), sequential."""
    times = []
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {ADMIN}"
        for i in range(n + 3):
            began = time.perf_counter()
            answer = http.get(url + "/admin/deliveries?limit=50", timeout=30)
            answer.raise_for_status()
            if i >= 3:
                times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}" if len(values) > 1 else ""


def measure(
    kind: str, args: argparse.Namespace, sandbox: SandboxServer, work: Path,
    naive: ProcfileServer, bare: ProcfileServer, calendars: Calendars,
) -> dict[str, Any]:  # fmt: skip
    figures: dict[str, list[dict[str, float]]] = {}
    with ledgers(kind, args.rows, args, work) as urls:
        servers = {
            state: ProcfileServer(
                bridge_env(sandbox, url, work), log_path=work / f"{kind}-{state}.log"
            )
            for state, url in urls.items()
        }
        for server in servers.values():
            server.start()
        try:
            # Each server's duplicate is its own event (one sandbox cancels each event once).
            duplicates = {
                s: json.dumps({"calendar_id": calendars(), "event_id": 42}) for s in servers
            }
            for state, server in servers.items():  # the duplicate's original, and warm-up
                first = requests.post(
                    server.url + "/hooks/bench", data=duplicates[state], timeout=30,
                    headers={"X-Bridge-Token": TOKEN, "Content-Type": "application/json"},
                )  # fmt: skip
                assert first.status_code == 200, first.text
                wrk(server.url + "/hooks/bench", seconds=1, body=None, calendar=calendars())
            wrk(naive.url + "/hooks/bench", seconds=1, body=None, calendar=calendars())
            duplicate = next(iter(duplicates.values()))
            runs: list[tuple[str, Callable[[], dict[str, float]]]] = []
            runs.append(
                (
                    "cancel proxy",
                    lambda: wrk(
                        naive.url + "/hooks/bench",
                        seconds=args.seconds,
                        body=None,
                        calendar=calendars(),
                    ),
                )
            )
            for state, server in servers.items():
                runs.append(
                    (
                        f"cancel {state}",
                        lambda s=server: wrk(
                            s.url + "/hooks/bench",
                            seconds=args.seconds,
                            body=None,
                            calendar=calendars(),
                        ),
                    )
                )
            runs.append(
                (
                    "bare flask",
                    lambda: wrk(
                        bare.url + "/hooks/bench", seconds=args.seconds, body=duplicate, calendar=0
                    ),
                )
            )
            for state, server in servers.items():
                runs.append(
                    (
                        f"duplicate {state}",
                        lambda s=server: wrk(
                            s.url + "/hooks/bench", seconds=args.seconds, body=duplicate, calendar=0
                        ),
                    )
                )
            for state, server in servers.items():
                runs.append(
                    (
                        f"ack {state}",
                        lambda s=server: wrk(
                            s.url + "/hooks/bench-ack",
                            seconds=args.seconds,
                            body=None,
                            calendar=calendars(),
                        ),
                    )
                )
            for state, server in servers.items():
                runs.append((f"admin list {state}", lambda s=server: {"p50": admin_list_ms(s.url)}))
            for r in range(args.rounds):
                for name, run in runs:
                    figures.setdefault(name, []).append(run())
                sandbox.state.reset()  # forget the calls: memory stays flat
                print(f"  round {r + 1}/{args.rounds} done", flush=True)
            purge = purge_while_serving(kind, urls["filled"], servers["filled"], calendars, work)
        finally:
            for server in servers.values():
                server.stop()
    return {"figures": figures, "purge": purge}


def purge_while_serving(
    kind: str, url: str, server: ProcfileServer, calendars: Calendars, work: Path
) -> dict[str, float]:
    """`db purge` of the prefilled rows while 4 clients send new cancels to the bridge on the
    same ledger: their latency throughout, and the space the purge gave back."""
    size_before = ledger_bytes(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "MEETBIT_"))}
    env["DATABASE_URL"] = url
    latencies: list[float] = []
    failures = [0]
    stop = threading.Event()
    calendar = calendars()

    def client(index: int) -> None:
        n = 0
        with requests.Session() as http:
            while not stop.is_set():
                n += 1
                body = {"calendar_id": calendar, "event_id": index * 200_000 + n}
                began = time.perf_counter()
                try:
                    answer = http.post(server.url + "/hooks/bench", json=body, timeout=30,
                                       headers={"X-Bridge-Token": TOKEN})  # fmt: skip
                    ok = answer.status_code == 200
                except requests.RequestException:
                    ok = False
                latencies.append((time.perf_counter() - began) * 1000)
                if not ok:
                    failures[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        began = time.perf_counter()
        command = ["db", "purge", "--yes", "--days", "30"]
        done = subprocess.run(
            [sys.executable, "-c", "from bridge.cli import main; main()", *command],
            env=env, capture_output=True, text=True, cwd=work,
        )  # fmt: skip
        took = time.perf_counter() - began
    finally:
        stop.set()  # the clients end with the purge, however it ended
        for t in threads:
            t.join()
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    purged = int(re.search(r"purged (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    result = {
        "purged": purged, "seconds": took, "requests": len(latencies), "failed": failures[0],
        "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies),
        "before": size_before, "after": ledger_bytes(url),
    }  # fmt: skip
    if kind == "sqlite":
        result["fresh"] = fresh_sqlite_bytes(url, work)
    return result


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ledger_bytes(url: str) -> float:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                return float(Path(engine.url.database or "").stat().st_size)
            return float(
                conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            )
    finally:
        engine.dispose()


def fresh_sqlite_bytes(url: str, work: Path) -> float:
    """A fresh ledger holding the same rows: SQLite's own compacted copy (VACUUM INTO)."""
    copy = work / "fresh-copy.db"
    copy.unlink(missing_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.connection.driver_connection.execute(f"VACUUM INTO '{copy}'")  # type: ignore[union-attr]
    finally:
        engine.dispose()
    return float(copy.stat().st_size)


def bytes_per_cancel(url: str, rows: int) -> float:
    """The filled ledger's size over its delivered cancels (before any benchmark traffic)."""
    return ledger_bytes(url) / rows


def report(kind: str, result: dict[str, Any], rows: int) -> None:
    f = result["figures"]

    def med(name: str, key: str = "rate") -> float:
        return statistics.median(r[key] for r in f[name])

    def line(label: str, name: str, key: str = "rate", unit: str = "req/s") -> None:
        values = [r[key] for r in f[name]]
        extra = ""
        if key == "rate":
            failed = max(r["failed"] for r in f[name])
            extra = f"   p99 {med(name, 'p99'):6.1f} ms   failed {failed:.1%}"
        value = statistics.median(values)
        print(f"  {label:30} {value:8.1f} {unit}  (rounds {spread(values)}){extra}")

    rounds = len(f["bare flask"])
    print(f"\n{kind}: {rows:,} prefilled delivered cancels, c{CONNECTIONS}, median of {rounds}")
    line("naive proxy, cancel", "cancel proxy")
    line("bare Flask", "bare flask")
    for state in ("empty", "filled"):
        line(f"bridge {state}: cancel", f"cancel {state}")
        line(f"bridge {state}: duplicate", f"duplicate {state}")
        line(f"bridge {state}: ack", f"ack {state}")
        line(f"bridge {state}: admin list p50", f"admin list {state}", "p50", "ms")
    proxy, bare = med("cancel proxy"), med("bare flask")

    def ratio(label: str, value: float, rounds: list[float], extra: str = "") -> None:
        print(f"    {label:30} {value:5.2f}   rounds {min(rounds):.2f}-{max(rounds):.2f}{extra}")

    def per_round(a: str, b: str) -> list[float]:
        return [x["rate"] / y["rate"] for x, y in zip(f[a], f[b], strict=True)]

    print("  ratios (of the medians; per round beside):")
    for state in ("empty", "filled"):
        c, d, a = f"cancel {state}", f"duplicate {state}", f"ack {state}"
        ratio(f"{c} / proxy", med(c) / proxy, per_round(c, "cancel proxy"))
        ratio(f"{d} / bare Flask", med(d) / bare, per_round(d, "bare flask"))
        ratio(f"{a} / bare Flask", med(a) / bare, per_round(a, "bare flask"),
              f"   p99 {med(a, 'p99'):.1f} ms")  # fmt: skip
    for path in ("cancel", "duplicate", "ack"):
        filled, empty = f"{path} filled", f"{path} empty"
        ratio(f"{path} filled / empty", med(filled) / med(empty), per_round(filled, empty))
    listed = med("admin list filled", "p50") / med("admin list empty", "p50")
    print(f"    {'admin list filled / empty':30} {listed:5.2f}   (time, not rate)")
    p = result["purge"]
    print(
        f"  purge of {p['purged']:,} rows: {p['seconds']:.0f} s; {p['requests']} cancels "
        f"meanwhile, {p['failed']} failed, p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms, "
        f"max {p['max']:.0f} ms"
    )
    sizes = (
        f"  ledger {p['before'] / 1e6:,.0f} MB before ({p['before'] / rows:,.0f} B per "
        f"prefilled cancel), {p['after'] / 1e6:,.1f} MB after"
    )
    if "fresh" in p:
        sizes += (
            f"; a fresh ledger of the remaining rows {p['fresh'] / 1e6:,.1f} MB "
            f"(after / fresh {p['after'] / p['fresh']:.2f})"
        )
    print(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ten-million", action="store_true", help="--rows 10000000")
    parser.add_argument("--ledgers", default="sqlite,postgres")
    parser.add_argument(
        "--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL admin URL"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--cache", default="~/.cache/meetbit-bridge-bench")
    args = parser.parse_args()
    if args.ten_million:
        args.rows = 10_000_000
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    calendars = Calendars()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        (work / "bridge.yaml").write_text(ROUTES)
        with SandboxServer(SandboxConfig(rate_limit=0)) as sandbox:
            naive_env = {
                "NAIVE_UPSTREAM": sandbox.url,
                "NAIVE_KEY_ID": sandbox.config.key_id,
                "NAIVE_KEY_SECRET": sandbox.config.key_secret,
                "LOG_LEVEL": "warning",
            }
            naive_server = ProcfileServer(
                naive_env, app="benchmarks.naive_proxy:app", log_path=work / "naive.log"
            )
            bare_server = ProcfileServer(
                {"LOG_LEVEL": "warning"}, app="tests.perf.bare_app:app", log_path=work / "bare.log"
            )
            with naive_server as naive, bare_server as bare:
                for kind in args.ledgers.split(","):
                    print(f"{kind}:", flush=True)
                    results[kind] = measure(kind, args, sandbox, work, naive, bare, calendars)
                    report(kind, results[kind], args.rows)


if __name__ == "__main__":
    main()
