"""The console's pages on a big ledger, beside the same query through the JSON admin API, in one
run: the deliveries page under each single filter and the overview, server-side (the Flask test
client: rendering and the ledger, no network).

Run from the repository root: `python benchmarks/bench_console.py [--rows 1000000] [--url URL]`.
Targets (README "Console"): the deliveries page with any one filter under 150 ms p50, the
overview under 250 ms p50. `prefill(url, rows)` is reusable: it writes `rows` deliveries of
8 routes, spread over 30 days, with a realistic mix of statuses.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefill import prefill as fill  # benchmarks/prefill.py, beside this file

from bridge.ledger import Ledger
from bridge.ledger.tables import deliveries

ROUTES = [f"route-{n}" for n in range(8)]
# status, outcome, share
MIX = [
    ("succeeded", "canceled", 0.86),
    ("succeeded", "already_canceled", 0.03),
    ("ignored", "ignored", 0.05),
    ("failed", None, 0.02),
    ("failed", "mapping_error", 0.01),
    ("dead", None, 0.01),
    ("pending", None, 0.015),
    ("succeeded", "not_found", 0.005),
]
ADMIN = "bench-admin-token"
CHUNK = 20_000


def prefill(url: str, rows: int, *, seed: int = 7) -> None:
    """`rows` deliveries in the ledger at `url` (migrated first), newest now, oldest 30 days
    ago, in MIX's proportions: the one prefill of the benchmarks (benchmarks/prefill.py)."""
    fill(url, rows, seed=seed, oldest_days=30.0, newest_days=0.0, mix=MIX,
         names=lambda n: (f"dlv_bench{n:012d}", f"key-{n}"))  # fmt: skip


def _count(url: str) -> int:
    """Deliveries already in the ledger at `url` (0 when it has no schema yet): a kept ledger
    (`--url`) is measured again without a second prefill, after a migration for instance."""
    ledger = Ledger(url)
    try:
        ledger.ensure_schema()
        with ledger.db.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one()
            )
    finally:
        ledger.dispose()


def _p50(fn: Callable[[], Any], n: int) -> float:
    fn()  # warm: templates compiled, statements cached, pages in the OS cache
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--url",
        help="ledger URL (default: a SQLite file in a temp dir); one that already holds --rows "
        "deliveries is measured as it is",
    )
    parser.add_argument("--n", type=int, default=21, help="requests per figure")
    args = parser.parse_args()

    from bridge import create_app
    from bridge.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        held = _count(url)
        if held >= args.rows:
            print(f"the ledger already holds {held:,} deliveries: not prefilled")
        else:
            started = time.perf_counter()
            prefill(url, args.rows)
            print(f"prefilled {args.rows:,} deliveries in {time.perf_counter() - started:.0f} s")
        config = Path(tmp) / "bridge.yaml"
        config.write_text(
            "routes:\n"
            + "".join(
                f"  {name}:\n    preset: generic\n    auth: {{header: X-T, token_env: T}}\n"
                "    target: {calendar_id: '1', event_id: '2'}\n    note: n\n"
                for name in ROUTES
            )
        )
        settings = Settings.from_env(
            {
                "MEETBIT_BASE_URL": "http://127.0.0.1:9",
                "MEETBIT_ACCESS_KEY_ID": "k",
                "MEETBIT_ACCESS_KEY_SECRET": "s",
                "BRIDGE_CONFIG": str(config),
                "DATABASE_URL": url,
                "BRIDGE_ADMIN_TOKEN": ADMIN,
                "T": "t",
            }
        )
        app = create_app(settings)
        console = app.test_client()
        page = console.get("/console/login").text
        nonce = re.search(r'name="login_token" value="([^"]+)"', page)
        assert nonce is not None
        console.post("/console/login", data={"login_token": nonce.group(1), "token": ADMIN})
        api = app.test_client()
        bearer = {"Authorization": f"Bearer {ADMIN}"}

        def get(client: Any, path: str, **kw: Any) -> Callable[[], None]:
            def call() -> None:
                answer = client.get(path, **kw)
                assert answer.status_code == 200, (path, answer.status_code)

            return call

        print(
            f"{'p50 ms, ' + str(args.n) + ' requests each':<42}{'console page':>14}{'JSON API':>12}"
        )
        for query in ("", "status=dead", "status=failed", "route=route-3",
                      "outcome=not_found", "outcome=canceled", "search=600123",
                      "search=key-500000", "search=dlv_bench000000400000"):  # fmt: skip
            suffix = f"?{query}" if query else ""
            page_ms = _p50(get(console, f"/console/deliveries{suffix}"), args.n)
            api_ms = _p50(get(api, f"/admin/deliveries{suffix}", headers=bearer), args.n)
            label = f"deliveries {query or '(no filter)'}"
            print(f"{label:<42}{page_ms:>14.1f}{api_ms:>12.1f}   (target page < 150)")
        overview_ms = _p50(get(console, "/console"), max(5, args.n // 3))
        print(f"{'overview':<42}{overview_ms:>14.1f}{'-':>12}   (target < 250)")
        app.extensions["bridge"].close()


if __name__ == "__main__":
    main()
