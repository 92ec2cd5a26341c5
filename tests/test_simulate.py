"""`meetbit-bridge simulate ROUTE FILE`: offline mapping of a payload file, secrets unset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bridge.cli import cli
from bridge.demo import payload_path

HUBSPOT_WHEN = "event.propertyName == 'dealstage' and event.propertyValue == 'closedlost'"
SALESFORCE_WHEN = "event.sObject.StageName == 'Closed Lost'"

ROUTES = """
routes:
  hubspot-deals:
    preset: hubspot
    secret_env: HUBSPOT_CLIENT_SECRET
    target: {link: "hubspot-deal:{{ event.objectId }}"}
    note: "Deal {{ event.objectId }} was lost"
  salesforce-opportunities:
    preset: salesforce
    organization_ids: ["00D000000000062EAA"]
    auth: {basic_user_env: SF_USER, basic_password_env: SF_PASSWORD}
    target:
      calendar_id: "{{ event.sObject.MeetBit_Calendar_Id__c }}"
      event_id: "{{ event.sObject.MeetBit_Event_Id__c }}"
    note: "{{ event.sObject.Name }} was lost"
  zapier:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAPIER_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note }}"
  by-email:
    preset: generic
    auth: {bearer_env: ZAPIER_TOKEN}
    target: {customer_email: "{{ payload.email }}"}
    note: "Customer churned"
"""
Simulate = Callable[..., Result]
SECRETS = ("HUBSPOT_CLIENT_SECRET", "SF_USER", "SF_PASSWORD", "ZAPIER_TOKEN")


@pytest.fixture
def simulate(tmp_path: Path) -> Simulate:
    config = tmp_path / "bridge.yaml"
    config.write_text(ROUTES)
    # Every secret unset, and nothing about MeetBit: simulate needs neither.
    env: dict[str, str | None] = {name: None for name in SECRETS}
    env.update(BRIDGE_CONFIG=str(config), MEETBIT_BASE_URL=None, DATABASE_URL=None)

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["simulate", *args], env=env, catch_exceptions=False)

    return run


def test_hubspot_batch_shows_each_event_and_the_when_that_decided_it(
    simulate: Simulate,
) -> None:
    result = simulate("hubspot-deals", str(payload_path("hubspot", "deal_batch.json")))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"route hubspot-deals (preset hubspot); when: {HUBSPOT_WHEN}"
    # Four events, one of them sent twice: three items, keyed by eventId.
    assert lines[1] == "3 item(s)"
    assert lines[2].startswith("  [0] key=3816279340: cancel every event linked to link")
    assert "'hubspot-deal:9876543210' (`when` true)" in lines[2]
    assert "note='Deal 9876543210 was lost'" in lines[2]
    assert lines[3:] == [
        f"  [1] key=3816279341: ignored (`when` is false: {HUBSPOT_WHEN})",
        f"  [2] key=3816279342: ignored (`when` is false: {HUBSPOT_WHEN})",
    ]


def test_salesforce_message_shows_each_notification(simulate: Simulate) -> None:
    result = simulate(
        "salesforce-opportunities", str(payload_path("salesforce", "two_notifications.xml"))
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"route salesforce-opportunities (preset salesforce); when: {SALESFORCE_WHEN}",
        "2 item(s)",
        "  [0] key=04l000000000001AAA: cancel calendar 12 event 345 (`when` true)"
        " note='ACME renewal was lost'",
        f"  [1] key=04l000000000002AAA: ignored (`when` is false: {SALESFORCE_WHEN})",
    ]


def test_form_file_without_when_maps_always(simulate: Simulate) -> None:
    result = simulate("zapier", str(payload_path("generic", "zapier.form")))
    assert result.exit_code == 0, result.output
    assert "when: (always)" in result.output
    assert "cancel calendar 12 event 345" in result.output
    assert "note='Deal ACME renewal was lost'" in result.output


def test_a_payload_that_does_not_map_names_the_field(simulate: Simulate, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"calendar_id": "twelve", "event_id": 345, "note": "x"}')
    result = simulate("zapier", str(bad))
    assert result.exit_code == 0, result.output
    assert "mapping error" in result.output
    assert "target.calendar_id" in result.output


def test_wrong_content_and_unknown_route_are_usage_errors(simulate: Simulate) -> None:
    wrong = simulate("salesforce-opportunities", str(payload_path("generic", "n8n.json")))
    assert wrong.exit_code == 1
    assert "415" in wrong.output and "text/xml" in wrong.output
    unknown = simulate("nope", str(payload_path("generic", "n8n.json")))
    assert unknown.exit_code == 2
    assert "hubspot-deals, salesforce-opportunities, zapier" in unknown.output


def test_every_target_kind_says_its_when_was_true(simulate: Simulate, tmp_path: Path) -> None:
    payload = tmp_path / "churn.json"
    payload.write_text('{"email": " Ann@Example.COM "}')
    result = simulate("by-email", str(payload))
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[2]
    assert line.startswith("  [0] key=sha256:")  # a generic body without an id: its hash
    assert line.endswith(
        ": cancel every event linked to customer_email 'ann@example.com' (`when` true)"
        " note='Customer churned'"
    )
    ids = tmp_path / "ids.json"
    ids.write_text('{"calendar_id": 12, "event_id": 345, "note": "bye"}')
    direct = simulate("zapier", str(ids))
    assert "cancel calendar 12 event 345 (`when` true) note='bye'" in direct.output


def test_simulate_shows_the_intakes_own_rows(simulate: Simulate, tmp_path: Path) -> None:
    """The preview is `intake.plan`: an email that renders as no email is the intake's own
    mapping error, not a second implementation's."""
    payload = tmp_path / "no-email.json"
    payload.write_text('{"email": "nobody"}')
    result = simulate("by-email", str(payload))
    assert result.exit_code == 0, result.output
    assert "mapping error: the payload does not map to a MeetBit cancel" in result.output
    assert "is not an email address: 'nobody'" in result.output


def test_a_header_without_a_colon_is_a_usage_error(simulate: Simulate) -> None:
    result = simulate("zapier", str(payload_path("generic", "zapier.form")), "-H", "X-Token")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: Invalid value for --header: 'X-Token' is not NAME:VALUE (see 'cli simulate --help')"
    ]
