"""The route file's `write_back` key: validated at startup, every problem named
`file.routes.<name>.write_back[i].<key>`; templates compiled; records rendered at intake."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from bridge.delivery import write_backs
from bridge.delivery.routes import parse_routes
from bridge.errors import ConfigError

ENV = {
    "TOKEN": "t",
    "HS": "pat-1",
    "ZD_EMAIL": "agent@example.com",
    "ZD_TOKEN": "zt",
    "SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def document(*entries: dict[str, Any]) -> dict[str, Any]:
    return {
        "routes": {
            "deals": {
                "preset": "generic",
                "auth": {"header": "X-Token", "token_env": "TOKEN"},
                "target": {"calendar_id": "1", "event_id": "{{ payload.id }}"},
                "note": "lost",
                "write_back": list(entries),
            }
        }
    }


def problems(*entries: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_routes(document(*entries), ENV, origin="f.yaml")
    return caught.value.problems


def test_a_valid_entry_compiles_with_the_sinks_defaults() -> None:
    routes = parse_routes(
        document({"to": "hubspot-note", "token_env": "HS", "record": "{{ payload.deal }}"}),
        ENV,
        origin="f.yaml",
    )
    [entry] = routes["deals"].write_back
    assert entry.to == "hubspot-note" and entry.on == frozenset({"canceled"})
    assert entry.sink.config.base_url == "https://api.hubapi.com"
    assert entry.rate == (100, 10.0)
    assert entry.sink.host == "api.hubapi.com"


def test_every_problem_is_named_by_its_entry_and_key() -> None:
    found = problems(
        {"to": "hubspot-note", "record": "x", "object": "lead", "api_key_env": "HS"},
        {"to": "zendesk-comment", "record": "1", "email_env": "ZD_EMAIL"},
        {"to": "webhook", "secret_env": "SECRET", "record": "x"},
        {"to": "pipedrive-note", "api_token_env": "NOPE", "record": "1"},
        {"to": "freshdesk-note", "api_key_env": "HS", "record": "1", "base_url": "http://x.io"},
    )
    p = "f.yaml.routes.deals.write_back"
    assert found == [
        f"{p}[0].api_key_env: not used by hubspot-note",
        f"{p}[0].token_env: required by hubspot-note",
        f"{p}[0].object: must be one of: deal, ticket, contact, company",
        f"{p}[1]: zendesk-comment needs exactly one of {{email_env, api_token_env}} or "
        "{bearer_env}",
        f"{p}[1].base_url: required by zendesk-comment (the vendor's origin)",
        f"{p}[2].record: not used by webhook",
        f"{p}[2].url: required by webhook",
        f"{p}[3].base_url: required by pipedrive-note (the vendor's origin)",
        f"{p}[3].api_token_env: environment variable NOPE is not set",
        f"{p}[4].base_url: use https (plain http only to loopback)",
    ]


def test_schema_problems_name_the_entry_index() -> None:
    found = problems({"to": "fax"}, {"to": "webhook", "on": ["lost"], "colour": "red"})
    p = "f.yaml.routes.deals.write_back"
    assert f"{p}[0].to: Must be one of: {', '.join(sorted(write_backs_sinks()))}." in found
    assert f"{p}[1].on[0]: Must be one of: canceled, already_canceled, not_found, dead." in found
    assert f"{p}[1].colour: Unknown field." in found


def write_backs_sinks() -> list[str]:
    from bridge.writeback import SINKS

    return list(SINKS)


def test_templates_are_checked_and_the_record_cannot_read_result() -> None:
    found = problems(
        {"to": "hubspot-note", "token_env": "HS", "record": "{{ result.event_id }}"},
        {"to": "hubspot-note", "token_env": "HS", "record": "x", "text": "{{ oops"},
        {"to": "hubspot-note", "token_env": "HS", "record": "x", "rate_limit": "fast"},
    )
    p = "f.yaml.routes.deals.write_back"
    assert found[0] == (
        f"{p}[0].record: cannot use `result`: the record is rendered when the webhook is received"
    )
    assert found[1].startswith(f"{p}[1].text: invalid Jinja2 template")
    assert found[2] == f"{p}[2].rate_limit: expected requests per time, like 100/10s"


def test_a_bare_on_key_in_yaml_is_read_as_on_not_as_true() -> None:
    text = """
routes:
  deals:
    preset: generic
    auth: {header: X-Token, token_env: TOKEN}
    target: {calendar_id: "1", event_id: "{{ payload.id }}"}
    note: lost
    write_back:
      - to: webhook
        url: https://hooks.example.com/catch
        secret_env: SECRET
        on: [canceled, already_canceled]
        rate_limit: 30/min
"""
    [entry] = parse_routes(yaml.safe_load(text), ENV, origin="f.yaml")["deals"].write_back
    assert entry.on == frozenset({"canceled", "already_canceled"})
    assert entry.rate == (30, 60.0)


def test_the_plan_keeps_the_record_and_only_what_the_text_reads() -> None:
    routes = parse_routes(
        document(
            {
                "to": "zendesk-comment",
                "base_url": "https://acme.zendesk.com",
                "email_env": "ZD_EMAIL",
                "api_token_env": "ZD_TOKEN",
                "record": "{{ event.ticket }}",
                "text": "{{ event.subject }}: {{ result.outcome }}",
            },
            {"to": "hubspot-note", "token_env": "HS", "record": "{{ event.missing }}"},
        ),
        ENV,
        origin="f.yaml",
    )
    event = {"ticket": "42", "subject": "Renewal", "secret_notes": "x"}
    plan = write_backs.plan(routes["deals"], {"payload": event, "event": event, "route": "deals"})
    assert plan is not None
    assert [(e["record"], e["error"]) for e in plan["entries"]] == [
        ("42", None),
        ("", "record rendered empty"),
    ]
    # The text reads `event` only: the payload is not kept.
    assert plan["context"] == {"event": event}
