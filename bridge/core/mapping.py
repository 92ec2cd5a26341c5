"""Route expressions: sandboxed Jinja2, compiled once, evaluated to cancel decisions.

Pure: takes plain data (the parsed payload, the current item, headers, query) and returns plain
data. Link look-ups (`customer_email`, `link`) are returned as `LinkLookup` for the caller to
resolve against the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, Undefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.core.limits import MAX_ID, NOTE_MAX
from bridge.errors import MappingError

# MeetBit rejects longer cancel notes (API.md section 4).

# Immutable sandbox: templates can read the payload but cannot call mutating methods or reach
# Python internals. ChainableUndefined lets `payload.a.b` on a missing `a` be simply undefined
# (false in `when`, empty in templates) instead of an exception.
_ENV = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)
# MeetBit ids: ASCII digits only ("١٢" and "１２" are not ids), 1 .. 2^63-1 (a BIGINT column).
_INT_RE = re.compile(r"\+?[0-9]{1,19}")


@dataclass(frozen=True)
class CancelCommand:
    calendar_id: int
    event_id: int
    note: str


@dataclass(frozen=True)
class LinkLookup:
    """Cancel every event the link store holds under `key` (an email or any operator key)."""

    kind: str  # "customer_email" | "link"
    key: str
    note: str


@dataclass(frozen=True)
class Ignored:
    reason: str


Decision = CancelCommand | LinkLookup | Ignored


class Expression:
    """A `when` condition: a bare boolean Jinja2 expression."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._fn: Callable[..., Any] = _ENV.compile_expression(source, undefined_to_none=False)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        value = self._fn(**context)
        return False if isinstance(value, Undefined) else bool(value)


class Template:
    """A rendered field (`target.*`, `note`)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = _ENV.from_string(source)

    def __call__(self, context: Mapping[str, Any]) -> str:
        return self._template.render(**context).strip()


@dataclass(frozen=True)
class RouteMapping:
    """The compiled mapping part of a route."""

    when: Expression | None
    note: Template
    calendar_id: Template | None = None
    event_id: Template | None = None
    customer_email: Template | None = None
    link: Template | None = None


def compile_check(source: str, *, expression: bool) -> str | None:
    """Compile once to report syntax errors at startup; returns the error text or None."""
    try:
        Expression(source) if expression else Template(source)
    except TemplateError as exc:
        return f"invalid Jinja2 {'expression' if expression else 'template'}: {exc}"
    return None


def names_used(source: str) -> frozenset[str]:
    """The top-level names a template reads (`payload`, `result`...); it must compile."""
    return frozenset(meta.find_undeclared_variables(_ENV.parse(source)))


def context(
    *, payload: Any, event: Any, headers: Mapping[str, str], query: Mapping[str, str], route: str
) -> dict[str, Any]:
    return {"payload": payload, "event": event, "headers": headers, "query": query, "route": route}


def cut_note(text: str) -> str:
    if len(text) <= NOTE_MAX:
        return text
    return text[: NOTE_MAX - 1].rstrip() + "…"


def _meetbit_id(raw: str) -> int | str:
    """A rendered id as an int, or the error message naming what is wrong with it."""
    if not raw:
        return "rendered empty"
    if _INT_RE.fullmatch(raw) and 0 < int(raw) <= MAX_ID:
        return int(raw)
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    return f"must render an integer from 1 to {MAX_ID}, got {shown!r}"


def decide(mapping: RouteMapping, ctx: Mapping[str, Any]) -> Decision:
    """Evaluate one item; raises MappingError (422) with field paths when it cannot map."""
    errors: dict[str, list[str]] = {}

    def run(path: str, fn: Callable[[Mapping[str, Any]], Any]) -> Any:
        try:
            return fn(ctx)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # Sandbox violations and runtime errors in user expressions are the payload's or
            # the route's problem, never a 500.
            errors.setdefault(path, []).append(f"could not be evaluated: {exc}")
            return None

    if mapping.when is not None:
        verdict = run("when", mapping.when)
        if errors:
            raise MappingError("the route's `when` could not be evaluated", errors=errors)
        if not verdict:
            return Ignored(f"`when` is false: {mapping.when.source}")

    note = run("note", mapping.note)
    if note is not None and not note:
        errors["note"] = ["rendered empty; MeetBit requires a cancel note"]

    decision: Decision | None = None
    if mapping.calendar_id is not None and mapping.event_id is not None:
        ids = {
            "target.calendar_id": run("target.calendar_id", mapping.calendar_id),
            "target.event_id": run("target.event_id", mapping.event_id),
        }
        parsed: dict[str, int] = {}
        for path, raw in ids.items():
            value = None if raw is None else _meetbit_id(raw)
            if isinstance(value, str):
                errors.setdefault(path, []).append(value)
            elif value is not None:
                parsed[path] = value
        if not errors:
            decision = CancelCommand(
                parsed["target.calendar_id"], parsed["target.event_id"], cut_note(note)
            )
    elif mapping.customer_email is not None:
        email = run("target.customer_email", mapping.customer_email)
        if email is not None and "@" not in email:
            errors["target.customer_email"] = [f"is not an email address: {email[:80]!r}"]
        elif email is not None and not errors:
            decision = LinkLookup("customer_email", email.lower(), cut_note(note))
    elif mapping.link is not None:
        key = run("target.link", mapping.link)
        if key is not None and not key:
            errors["target.link"] = ["rendered empty"]
        elif key is not None and not errors:
            decision = LinkLookup("link", key, cut_note(note))

    if errors or decision is None:
        raise MappingError("the payload does not map to a MeetBit cancel", errors=errors)
    return decision
