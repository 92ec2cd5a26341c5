"""Traces (the `otel` extra), read from the SDK's in-memory exporter: a span per webhook that
continues the sender's `traceparent`, with children for verify, the ledger writes, the rate
wait and the MeetBit call; `traceparent` propagated to MeetBit (the sandbox records it); a
worker attempt is a trace of its own linked to its webhook's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.flask")

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from bridge import tracing  # noqa: E402
from bridge.delivery.service import Bridge  # noqa: E402
from bridge.delivery.worker import Worker  # noqa: E402
from tests.conftest import ZAP_TOKEN  # noqa: E402

AUTH = {"X-Bridge-Token": ZAP_TOKEN}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SENDER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SENDER_SPAN}-01"
# One exporter for the session: a tracer provider is set once per process.
_EXPORTER = InMemorySpanExporter()
_PROCESSOR = SimpleSpanProcessor(_EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    assert tracing.setup({}, processor=_PROCESSOR)
    _EXPORTER.clear()
    try:
        yield _EXPORTER
    finally:
        tracing.teardown()
        _EXPORTER.clear()


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def tree(finished: list[ReadableSpan], trace_id: str) -> dict[str, list[ReadableSpan]]:
    """Spans of one trace by name."""
    out: dict[str, list[ReadableSpan]] = {}
    for s in finished:
        if hexid(s.context.trace_id, 32) == trace_id:
            out.setdefault(s.name, []).append(s)
    return out


def parent_of(s: ReadableSpan) -> str | None:
    return hexid(s.parent.span_id, 16) if s.parent is not None else None


def span_id(s: ReadableSpan) -> str:
    return hexid(s.context.span_id, 16)


def seen_headers(sandbox: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = requests.get(f"{sandbox.url}/_sandbox/headers", timeout=5).json()
    return seen


def test_a_webhook_continues_the_senders_trace_and_propagates_it_to_meetbit(
    spans: InMemorySpanExporter, make_app: Callable[..., Flask], sandbox: Any
) -> None:
    # 1/s: the second webhook's slot is in a later calendar second, so it waits for it.
    app = make_app(MEETBIT_RATE_LIMIT="1/s")
    client = app.test_client()
    first = client.post(
        "/hooks/zap",
        json={"calendar_id": 5, "event_id": 50},
        headers={**AUTH, "traceparent": TRACEPARENT},
    )
    assert first.status_code == 200
    second_parent = f"00-{'a' * 32}-{'b' * 16}-01"
    second = client.post(
        "/hooks/zap",
        json={"calendar_id": 5, "event_id": 51},
        headers={**AUTH, "traceparent": second_parent},
    )
    assert second.status_code == 200

    finished = list(spans.get_finished_spans())
    one = tree(finished, TRACE_ID)
    [server] = one["POST /hooks/<name>"]
    assert parent_of(server) == SENDER_SPAN  # continued, not a new trace
    steps = {name: s for name, ss in one.items() for s in ss if parent_of(s) == span_id(server)}
    assert {"bridge.verify", "bridge.ledger.write", "meetbit.cancel"} <= set(steps)
    writes = sorted(s.attributes["step"] for s in one["bridge.ledger.write"])  # type: ignore[index]
    assert writes == ["complete", "start"]
    [call] = one["meetbit.cancel"]
    assert call.attributes is not None and call.attributes["event_id"] == 50
    # The requests instrumentation's client span, under the MeetBit call, is what MeetBit sees.
    [http] = [s for s in finished if parent_of(s) == span_id(call)]
    sent = {h["event_id"]: h["traceparent"] for h in seen_headers(sandbox)}
    assert sent[50] == f"00-{TRACE_ID}-{span_id(http)}-01"
    assert sent[51].split("-")[1] == "a" * 32

    two = tree(finished, "a" * 32)
    [waited] = two["bridge.rate_wait"]
    [server_two] = two["POST /hooks/<name>"]
    assert parent_of(waited) == span_id(server_two)
    assert waited.end_time is not None and waited.start_time is not None
    assert (waited.end_time - waited.start_time) / 1e9 > 0.1  # it did wait for the slot


def test_a_worker_attempt_links_to_its_webhooks_trace(
    spans: InMemorySpanExporter, make_app: Callable[..., Flask], sandbox: Any
) -> None:
    app = make_app()
    queued = app.test_client().post(
        "/hooks/zap-ack",
        json={"calendar_id": 5, "event_id": 60},
        headers={**AUTH, "traceparent": TRACEPARENT},
    )
    assert queued.status_code == 202
    [server] = tree(list(spans.get_finished_spans()), TRACE_ID)["POST /hooks/<name>"]
    bridge: Bridge = app.extensions["bridge"]
    assert Worker(bridge.ledger, bridge.dispatcher).run_once() == 1

    [attempt] = [s for s in spans.get_finished_spans() if s.name == "bridge.worker.attempt"]
    assert attempt.parent is None and hexid(attempt.context.trace_id, 32) != TRACE_ID
    [link] = attempt.links
    assert (hexid(link.context.trace_id, 32), span_id_of(link)) == (TRACE_ID, span_id(server))
    worker_trace = hexid(attempt.context.trace_id, 32)
    assert "meetbit.cancel" in tree(list(spans.get_finished_spans()), worker_trace)
    [sent] = [h["traceparent"] for h in seen_headers(sandbox) if h["event_id"] == 60]
    assert sent.split("-")[1] == worker_trace


def span_id_of(link: Any) -> str:
    return hexid(link.context.span_id, 16)


def test_without_the_variables_tracing_stays_off(make_app: Callable[..., Flask]) -> None:
    tracing.teardown()
    assert tracing.setup({}) is False and not tracing.enabled()
    assert tracing.current_traceparent() is None
    with tracing.span("bridge.verify"):
        pass  # a no-op
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none"})
