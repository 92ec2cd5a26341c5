from __future__ import annotations

from typing import Any

import pytest

from bridge.core.mapping import (
    CancelCommand,
    Expression,
    Ignored,
    LinkLookup,
    RouteMapping,
    Template,
    context,
    cut_note,
    decide,
)
from bridge.errors import MappingError


def ctx(payload: Any, event: Any = None) -> dict[str, Any]:
    return context(
        payload=payload,
        event=payload if event is None else event,
        headers={"x-a": "1"},
        query={"q": "v"},
        route="r",
    )


def ids_mapping(
    when: str | None = None, note: str = "Deal {{ payload.name }} lost"
) -> RouteMapping:
    return RouteMapping(
        when=Expression(when) if when else None,
        note=Template(note),
        calendar_id=Template("{{ payload.cal }}"),
        event_id=Template("{{ payload.evt }}"),
    )


def test_maps_ids_and_note() -> None:
    d = decide(ids_mapping(), ctx({"cal": 12, "evt": "345", "name": "ACME"}))
    assert d == CancelCommand(12, 345, "Deal ACME lost")


def test_when_false_is_ignored_with_reason() -> None:
    d = decide(ids_mapping("payload.stage == 'lost'"), ctx({"stage": "won", "cal": 1, "evt": 2}))
    assert isinstance(d, Ignored) and "payload.stage == 'lost'" in d.reason


def test_when_on_missing_nested_keys_is_false_not_an_error() -> None:
    d = decide(ids_mapping("payload.a.b.c == 'x'"), ctx({"cal": 1, "evt": 2}))
    assert isinstance(d, Ignored)


def test_names_available_to_expressions() -> None:
    m = ids_mapping("headers['x-a'] == '1' and query.q == 'v' and route == 'r'", note="n")
    assert decide(m, ctx({"cal": 1, "evt": 2})) == CancelCommand(1, 2, "n")


def test_non_integer_and_missing_ids_are_422_with_paths() -> None:
    with pytest.raises(MappingError) as info:
        decide(ids_mapping(), ctx({"cal": "twelve", "name": "x"}))
    errors = info.value.errors or {}
    assert "must render an integer from 1 to" in errors["target.calendar_id"][0]
    assert errors["target.event_id"] == ["rendered empty"]
    assert info.value.status == 422


def test_empty_note_is_a_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        decide(ids_mapping(note="  {{ payload.nothing }} "), ctx({"cal": 1, "evt": 2}))
    assert "note" in (info.value.errors or {})


def test_note_is_trimmed_and_cut_to_255_with_ellipsis() -> None:
    d = decide(ids_mapping(note="  {{ payload.n }}  "), ctx({"cal": 1, "evt": 2, "n": "x" * 400}))
    assert isinstance(d, CancelCommand)
    assert len(d.note) == 255 and d.note.endswith("…")
    assert cut_note("short") == "short"


def test_sandbox_blocks_python_internals() -> None:
    m = ids_mapping(note="{{ payload.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(MappingError):
        decide(m, ctx({"cal": 1, "evt": 2}))


def test_sandbox_blocks_mutation() -> None:
    m = ids_mapping(note="{{ payload.items.append(1) }}{{ payload.pop('cal') }}")
    payload = {"cal": 1, "evt": 2, "items": []}
    with pytest.raises(MappingError):
        decide(m, ctx(payload))
    assert payload == {"cal": 1, "evt": 2, "items": []}


def test_customer_email_is_lowercased_lookup() -> None:
    m = RouteMapping(when=None, note=Template("bye"), customer_email=Template("{{ payload.e }}"))
    assert decide(m, ctx({"e": " Ann@Example.COM "})) == LinkLookup(
        "customer_email", "ann@example.com", "bye"
    )
    with pytest.raises(MappingError):
        decide(m, ctx({"e": "not-an-email"}))


def test_link_key() -> None:
    m = RouteMapping(when=None, note=Template("bye"), link=Template("deal:{{ payload.id }}"))
    assert decide(m, ctx({"id": 7})) == LinkLookup("link", "deal:7", "bye")


@pytest.mark.parametrize(
    "raw",
    [2**63, "9" * 23, "9" * 5000, 0, -3, "١٢", "１２", 12.5, "12.0", "1e3", True, "NaN"],
)
def test_ids_outside_ascii_digits_1_to_2_63_minus_1_are_refused(raw: Any) -> None:
    with pytest.raises(MappingError) as info:
        decide(ids_mapping(), ctx({"cal": raw, "evt": 1}))
    assert list((info.value.errors or {}).keys()) == ["target.calendar_id"]


def test_the_largest_id_and_a_plus_sign_map() -> None:
    assert decide(
        ids_mapping(), ctx({"cal": 2**63 - 1, "evt": "+7", "name": "X"})
    ) == CancelCommand(2**63 - 1, 7, "Deal X lost")


def test_a_23_digit_calendar_id_is_a_422_not_a_500(client: Any) -> None:
    resp = client.post(
        "/hooks/zap",
        json={"calendar_id": 99999999999999999999999, "event_id": 1},
        headers={"X-Bridge-Token": "tok-1"},
    )
    assert resp.status_code == 422
    assert "target.calendar_id" in resp.get_json()["errors"]
