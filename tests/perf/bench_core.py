"""What the bridge adds to one cancel, and how fast it answers a duplicate webhook.

Run from the repository root: `python tests/perf/bench_core.py [--n 400] [--seconds 5]`.
Everything runs on loopback: the MeetBit sandbox (no latency, no rate limit), the bridge under
gunicorn with the Procfile's settings (config/gunicorn.conf.py: gthread, 2 workers x 8 threads)
and, as the baseline, a bare Flask endpoint under the same gunicorn settings. MEETBIT_RATE_LIMIT
is set to 1000/s so that the rate limiter's spacing is not what is measured.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from bridge.sandbox import SandboxConfig, SandboxServer
from bridge.testing import GunicornServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"
ROUTES = """
routes:
  bench:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: BENCH_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled by automation"
"""
HOOK_HEADERS = {"X-Bridge-Token": TOKEN}


@dataclass
class ProcfileServer(GunicornServer):
    """gunicorn exactly as the Procfile starts it (its config file), bound to loopback."""

    app: str = "bridge:create_app()"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", self.app,
            "--config", str(ROOT / "config" / "gunicorn.conf.py"),
            "--chdir", str(ROOT),
            "--bind", f"127.0.0.1:{self.port}",
        ]  # fmt: skip


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], requests.Response], expect: int) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != expect:
        raise RuntimeError(f"expected {expect}, got {response.status_code}: {response.text}")
    return elapsed


def latency(
    sandbox: SandboxServer, bridge: GunicornServer, n: int
) -> tuple[list[float], list[float]]:
    """n direct cancels and n cancels through the bridge, alternated, distinct events each."""
    direct_url = sandbox.url + "/api/public/v2.0/calendars/{cal}/events/{ev}/cancel"
    keys = {
        "X-Access-Key-Id": sandbox.config.key_id,
        "X-Access-Key-Secret": sandbox.config.key_secret,
    }
    direct: list[float] = []
    bridged: list[float] = []
    with requests.Session() as to_meetbit, requests.Session() as to_bridge:

        def one_direct(event_id: int) -> float:
            url = direct_url.format(cal=1, ev=event_id)
            body = {"cancel_note": "Canceled by automation"}
            return timed(lambda: to_meetbit.post(url, json=body, headers=keys, timeout=10), 200)

        def one_bridged(event_id: int) -> float:
            body = {"calendar_id": 2, "event_id": event_id}
            url = bridge.url + "/hooks/bench"
            return timed(
                lambda: to_bridge.post(url, json=body, headers=HOOK_HEADERS, timeout=10), 200
            )

        for event_id in range(1, 31):  # warm-up: connections, imports, SQLite pages
            one_direct(event_id)
            one_bridged(event_id)
        for i in range(n):
            event_id = 1000 + i
            # Alternate which goes first, so drift and caching favour neither.
            if i % 2:
                direct.append(one_direct(event_id))
                bridged.append(one_bridged(event_id))
            else:
                bridged.append(one_bridged(event_id))
                direct.append(one_direct(event_id))
    return direct, bridged


def _client(url: str, body: dict[str, int], threads: int, seconds: float) -> int:
    """One load-generating process: `threads` keep-alive Sessions for `seconds`; answers/s."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(index: int) -> None:
        with requests.Session() as http:
            while time.monotonic() < stop:
                response = http.post(url, json=body, headers=HOOK_HEADERS, timeout=10)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                counts[index] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts)


def throughput(
    url: str, body: dict[str, int], *, processes: int, threads: int, seconds: float
) -> float:
    """Requests/s from several client processes (one Python client alone is GIL-bound)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        started = time.perf_counter()
        totals = pool.starmap(_client, [(url, body, threads, seconds)] * processes)
        elapsed = time.perf_counter() - started
    return sum(totals) / max(elapsed, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=400, help="cancels per latency series")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--threads", type=int, default=3, help="threads per client process")
    args = parser.parse_args()
    clients = args.processes * args.threads

    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        work = Path(tmp)
        (work / "bridge.yaml").write_text(ROUTES)
        with SandboxServer(SandboxConfig(rate_limit=0)) as sandbox:
            env = {
                "MEETBIT_BASE_URL": sandbox.url,
                "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
                "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
                "MEETBIT_RATE_LIMIT": "1000/s",
                "BRIDGE_CONFIG": str(work / "bridge.yaml"),
                "DATABASE_URL": f"sqlite:///{work / 'ledger.db'}",
                "BENCH_TOKEN": TOKEN,
                "LOG_LEVEL": "warning",
            }
            with ProcfileServer(env, log_path=work / "bridge.log") as bridge:
                print(f"latency: {args.n} cancels each, sequential, one keep-alive Session")
                direct, bridged = latency(sandbox, bridge, args.n)
                for name, series in (("direct to sandbox", direct), ("through bridge", bridged)):
                    print(
                        f"  {name:18} p50 {percentile(series, 50):6.2f} ms"
                        f"   p99 {percentile(series, 99):6.2f} ms"
                        f"   mean {statistics.fmean(series):6.2f} ms"
                    )
                p50 = percentile(bridged, 50) - percentile(direct, 50)
                p99 = percentile(bridged, 99) - percentile(direct, 99)
                print(
                    f"  overhead (b - a)   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
                    "   (target p50 <= 3 ms)"
                )

                dup = {"calendar_id": 3, "event_id": 42}
                first = requests.post(
                    bridge.url + "/hooks/bench", json=dup, headers=HOOK_HEADERS, timeout=10
                )
                first.raise_for_status()
                again = requests.post(
                    bridge.url + "/hooks/bench", json=dup, headers=HOOK_HEADERS, timeout=10
                )
                assert again.headers.get("Idempotent-Replayed") == "true", again.headers
                print(
                    f"throughput: {clients} clients ({args.processes} processes x {args.threads} "
                    f"threads), {args.seconds:g} s each"
                )
                replayed = throughput(
                    bridge.url + "/hooks/bench",
                    dup,
                    processes=args.processes,
                    threads=args.threads,
                    seconds=args.seconds,
                )
                calls_after = sandbox.stats()["calls"]
            with ProcfileServer(
                {"LOG_LEVEL": "warning"}, app="tests.perf.bare_app:app", log_path=work / "bare.log"
            ) as bare:
                baseline = throughput(
                    bare.url + "/hooks/bench",
                    dup,
                    processes=args.processes,
                    threads=args.threads,
                    seconds=args.seconds,
                )
            calls = sandbox.stats()["calls"]
        assert calls == calls_after, "a duplicate reached MeetBit"
    print(f"  bare Flask           {baseline:8.0f} req/s")
    print(f"  duplicate (replayed) {replayed:8.0f} req/s")
    print(f"  ratio                {replayed / baseline:8.2f}   (target >= 0.40)")


if __name__ == "__main__":
    main()
