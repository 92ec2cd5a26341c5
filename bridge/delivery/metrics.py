"""Prometheus metrics: the counters the web and dispatch code record, and the ledger gauges that
are read from the database at scrape time, so every number is right however many processes run.

Under gunicorn (`PROMETHEUS_MULTIPROC_DIR` set by `config/gunicorn.conf.py`) each worker writes its
samples to files in that directory and a scrape merges them; otherwise they live in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.errors import LedgerUnavailable

if TYPE_CHECKING:
    from bridge.ledger import Ledger

__all__ = [
    "MULTIPROC_ENV",
    "PREFIX",
    "UNKNOWN",
    "LedgerCollector",
    "build_registry",
    "label",
    "meetbit_call_timer",
    "record_meetbit_call",
    "record_webhook",
    "render",
]

PREFIX = "meetbit_bridge_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "unknown"

# Defined once and registered nowhere (`registry=None`): a registry is built per app, so a second
# app in the same process never meets "Duplicated timeseries". In multiprocess mode the values
# are backed by files, which prometheus_client decides when it is first imported.
WEBHOOKS = Counter(
    PREFIX + "webhooks",
    "Webhooks answered on /hooks/*, by route and HTTP status.",
    ["route", "status"],
    registry=None,
)
REJECTIONS = Counter(
    PREFIX + "webhook_rejections",
    "Webhooks answered 4xx, by route and machine-readable reason.",
    ["route", "reason"],
    registry=None,
)
MEETBIT_CALLS = Counter(
    PREFIX + "meetbit_calls",
    "Cancel Event calls made to MeetBit by the web processes, by MeetBit account and result "
    "(`ok` or the error reason); the worker's are meetbit_bridge_worker_meetbit_calls_total.",
    ["account", "result"],
    registry=None,
)
MEETBIT_SECONDS = Histogram(
    PREFIX + "meetbit_call_seconds",
    "Duration of the web processes' Cancel Event calls to MeetBit, in seconds.",
    # MeetBit answers in tens of milliseconds; the tail reaches the read timeout (10 s default).
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,
)
_LIVE_METRICS = (WEBHOOKS, REJECTIONS, MEETBIT_CALLS, MEETBIT_SECONDS)


def label(reason: str) -> str:
    """One style for every `reason` and `result` label (and log field): snake_case. Problem
    type slugs are kebab-case (`event-not-found`), verifier and MeetBit reasons snake_case
    (`bad_credentials`); a dashboard should not need to know which said it."""
    return reason.replace("-", "_")


def record_webhook(route: str, status: int, reason: str | None) -> None:
    """Count one answered hook request; `route` must already be a configured name or `unknown`."""
    WEBHOOKS.labels(route=route, status=str(status)).inc()
    if 400 <= status < 500:
        REJECTIONS.labels(route=route, reason=label(reason or UNKNOWN)).inc()


def record_meetbit_call(result: str, seconds: float, account: str = "default") -> None:
    """Count one MeetBit call: `result` is `ok` or the MeetBitError's `reason`."""
    MEETBIT_CALLS.labels(account=account, result=label(result)).inc()
    MEETBIT_SECONDS.observe(seconds)


# A call given up before anything was sent (its rate slot had passed) is no call.
_NOT_SENT = "late"


@contextmanager
def meetbit_call_timer(account: str = "default") -> Iterator[None]:
    """Time the MeetBit call in the block; an exception's `reason` becomes the result label."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        reason = str(getattr(exc, "reason", None) or "error")
        if reason != _NOT_SENT:
            record_meetbit_call(reason, _since(started), account)
        raise
    record_meetbit_call("ok", _since(started), account)


def _since(started: float) -> float:
    return time.perf_counter() - started


class LedgerCollector(Collector):
    """Gauges read from the ledger on each scrape: shared state, so no process holds a copy."""

    def __init__(self, ledger: Ledger, *, worker_window: float) -> None:
        self.ledger = ledger
        self.worker_window = worker_window

    def describe(self) -> Iterable[Metric]:
        # Declared without querying the database, which may be down when the registry is built.
        return [
            GaugeMetricFamily(PREFIX + "ledger_up", _LEDGER_UP_HELP),
            GaugeMetricFamily(PREFIX + "deliveries", _DELIVERIES_HELP, labels=["status"]),
            GaugeMetricFamily(PREFIX + "oldest_pending_seconds", _OLDEST_HELP),
            GaugeMetricFamily(PREFIX + "workers_alive", _WORKERS_HELP),
            GaugeMetricFamily(PREFIX + WRITE_BACKS, _WRITE_BACKS_HELP, labels=["to", "status"]),
            CounterMetricFamily(
                PREFIX + "worker_meetbit_calls", _WORKER_CALLS_HELP, labels=["result"]
            ),
        ]

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self.ledger.queries.counts_by_status()
            oldest = self.ledger.queries.oldest_pending_age()
            workers = self.ledger.coordination.workers_alive(within=self.worker_window)
            write_backs = self.ledger.write_backs.counts()
            retrying = self.ledger.queries.failed_retrying()
            worker_calls = self.ledger.coordination.worker_calls()
        except LedgerUnavailable:
            # A scrape must still answer while the database is down: that is when it matters.
            yield GaugeMetricFamily(PREFIX + "ledger_up", _LEDGER_UP_HELP, value=0)
            return
        yield GaugeMetricFamily(PREFIX + "ledger_up", _LEDGER_UP_HELP, value=1)
        deliveries = GaugeMetricFamily(PREFIX + "deliveries", _DELIVERIES_HELP, labels=["status"])
        # `failed` is final; a failed delivery that will be attempted again is `retrying`.
        counts["retrying"] = retrying
        counts["failed"] = counts.get("failed", 0) - retrying
        for status, count in sorted(counts.items()):
            deliveries.add_metric([status], count)
        yield deliveries
        calls = CounterMetricFamily(
            PREFIX + "worker_meetbit_calls", _WORKER_CALLS_HELP, labels=["result"]
        )
        for result, count in sorted(worker_calls.items()):
            calls.add_metric([result], count)
        yield calls
        yield GaugeMetricFamily(PREFIX + "oldest_pending_seconds", _OLDEST_HELP, value=oldest or 0)
        yield GaugeMetricFamily(PREFIX + "workers_alive", _WORKERS_HELP, value=workers)
        family = GaugeMetricFamily(PREFIX + WRITE_BACKS, _WRITE_BACKS_HELP, labels=["to", "status"])
        for (to, status), count in sorted(write_backs.items()):
            family.add_metric([to, status], count)
        yield family


# Read from the ledger like the delivery gauges (the worker process makes the write-backs, the
# web processes are scraped): every job ever made, by sink and status, until purged.
WRITE_BACKS = "write_backs_total"
_WRITE_BACKS_HELP = "Write-back jobs in the ledger, by sink (`to`) and status."
_LEDGER_UP_HELP = "1 if the ledger database answered this scrape, else 0."
_DELIVERIES_HELP = (
    "Deliveries in the ledger, by status (`failed`: final; `retrying`: failed, to be attempted "
    "again)."
)
_WORKER_CALLS_HELP = (
    "Cancel Event calls made to MeetBit by worker processes, by result (`ok` or the error "
    "reason); counted in the ledger, so every instance's workers are included."
)
_OLDEST_HELP = "Age in seconds of the oldest delivery still awaiting an outcome (0 if none)."
_WORKERS_HELP = "Delivery workers that sent a heartbeat recently."


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def build_registry(ledger: Ledger, *, worker_window: float) -> CollectorRegistry:
    """The registry one app scrapes: merged worker files, or this process's own metrics."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        for metric in _LIVE_METRICS:
            registry.register(metric)
    registry.register(LedgerCollector(ledger, worker_window=worker_window))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
