"""OpenTelemetry traces, optional: installed with the `otel` extra (`pip install
'meetbit-bridge[otel]'`) and on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_TRACES_EXPORTER` is
set. Off (or without the extra), `span` is a no-op that imports nothing.

A webhook is the Flask instrumentation's server span, continuing the sender's W3C
`traceparent`; the bridge adds its steps as children (`bridge.verify`, `bridge.ledger.write`,
`bridge.rate_wait`, `meetbit.cancel`), and the requests instrumentation's client span under
`meetbit.cancel` sends `traceparent` on to MeetBit. The webhook's `traceparent` is stored on
each delivery, so a worker's attempt (a trace of its own) links back to it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

__all__ = [
    "ENV_VARS",
    "current_traceparent",
    "enabled",
    "instrument_app",
    "instrument_engine",
    "linked_span",
    "setup",
    "span",
]

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
SERVICE_ENV = "OTEL_SERVICE_NAME"
ENV_VARS = (ENDPOINT_ENV, EXPORTER_ENV, SERVICE_ENV)
SERVICE = "meetbit-bridge"

_provider: TracerProvider | None = None
_processors: list[SpanProcessor] = []
_on = False


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (`OTEL_TRACES_EXPORTER=none` does not)."""
    env = os.environ if environ is None else environ
    exporter = env.get(EXPORTER_ENV, "").strip().lower()
    return bool(env.get(ENDPOINT_ENV, "").strip() or exporter) and exporter != "none"


def available() -> bool:
    """Whether the `otel` extra is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("opentelemetry.sdk", "opentelemetry.instrumentation.flask")
    )


def enabled() -> bool:
    return _on


def setup(
    environ: Mapping[str, str] | None = None, *, processor: SpanProcessor | None = None
) -> bool:
    """Turn tracing on when the environment asks for it (or a `processor` is given: tests) and
    the extra is installed; True if it is on. The tracer provider is made once per process;
    a later call adds its processor to it (once)."""
    global _provider, _on
    env = os.environ if environ is None else environ
    if processor is None and not wanted(env):
        return _on
    if not available():
        log.warning(
            "%s or %s is set but the otel extra is not installed "
            "(pip install 'meetbit-bridge[otel]'): no traces",
            ENDPOINT_ENV,
            EXPORTER_ENV,
        )
        return False
    from opentelemetry import trace
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if _provider is None:
        resource = Resource.create({"service.name": env.get(SERVICE_ENV) or SERVICE})
        _provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(_provider)
    if processor is not None:
        if processor not in _processors:
            _processors.append(processor)
            _provider.add_span_processor(processor)
    else:
        for exporter in _exporters(env):
            _provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_provider)
    _on = True
    return True


def teardown() -> None:
    """Tracing off again (tests): spans are no-ops, requests is no longer instrumented."""
    global _on
    if _on:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().uninstrument()
    _on = False


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip() for n in (env.get(EXPORTER_ENV) or "otlp").lower().split(",")]
    exporters: list[Any] = []
    for name in names:
        if name == "otlp":
            # http/protobuf: the exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, ...).
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name and name != "none":
            log.warning("%s=%s is not supported (otlp, console, none)", EXPORTER_ENV, name)
    return exporters


def instrument_app(app: Any) -> None:
    """The Flask instrumentation's server span per request, continuing the caller's
    `traceparent` (W3C, the SDK's default propagator)."""
    if _on:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # Typed Any: the instrumentation's own signatures are not annotated.
        instrumentor: Any = FlaskInstrumentor()
        instrumentor.instrument_app(app, tracer_provider=_provider)


def instrument_engine(engine: Any) -> None:
    """Spans for the ledger's SQLAlchemy statements (the hot path's prepared statements run on
    the driver's cursor and are covered by the bridge's own `bridge.ledger.write` spans)."""
    if _on and importlib.util.find_spec("opentelemetry.instrumentation.sqlalchemy"):
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=_provider)


def span(name: str, **attributes: Any) -> Any:
    """A child span of the current one; a no-op context manager when tracing is off or there
    is no current span (a step outside any webhook or attempt is not a trace of its own)."""
    if not _on:
        return nullcontext()
    from opentelemetry import trace

    if not trace.get_current_span().get_span_context().is_valid:
        return nullcontext()
    tracer = trace.get_tracer("bridge", tracer_provider=_provider)
    clean = {k: v for k, v in attributes.items() if v is not None}
    return tracer.start_as_current_span(name, attributes=clean)


@contextmanager
def linked_span(name: str, traceparent: str | None, **attributes: Any) -> Iterator[None]:
    """A new trace (a worker attempt) linked to the one `traceparent` names (its webhook)."""
    if not _on:
        yield
        return
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    links = []
    if traceparent:
        parent = trace.get_current_span(
            TraceContextTextMapPropagator().extract({"traceparent": traceparent})
        ).get_span_context()
        if parent.is_valid:
            links.append(trace.Link(parent))
    tracer = trace.get_tracer("bridge", tracer_provider=_provider)
    clean = {k: v for k, v in attributes.items() if v is not None}
    # A root of its own: the worker has no current span, a replay's request would be wrong.
    with tracer.start_as_current_span(
        name, context=context.Context(), links=links, attributes=clean
    ):
        yield


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to store with a delivery (None when off)."""
    if not _on:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")
