"""`GET /openapi.json`: a valid OpenAPI 3.1 document built from the bridge's own schemas and
the routes it is configured with."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.conftest import DEFAULT_ROUTES

HOOK = "/hooks/{route}"
# Every status the README lists for a webhook, success and error.
DOCUMENTED_STATUSES = ["200", "202", "400", "401", "404", "409", "413", "415", "422", "502", "503"]
# The Event object as the MeetBit Cancel Event page documents it (both renderings).
EVENT_FIELDS = {
    "id", "calendar_id", "title", "body", "start", "end", "attendees", "location",
    "cancel_note", "canceled_by_id", "canceled_by_type", "created_at", "updated_at",
    "deleted_at", "public_id", "provider_event_id", "customer_id", "meeting_link_id",
    "online_conference",
}  # fmt: skip

SALESFORCE_ROUTE = """
  sf-opportunity-lost:
    preset: salesforce
    organization_ids: ["00D000000000062"]
    target:
      calendar_id: "{{ event.sObject.MeetBit_Calendar__c }}"
      event_id: "{{ event.sObject.MeetBit_Event__c }}"
    note: "Opportunity lost"
"""


def fetch(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = fetch(client)
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "meetbit-bridge"
    assert document["info"]["version"] == metadata.version("meetbit-bridge")
    assert fetch(client) == document


def test_hook_path_lists_the_configured_routes_and_contract_statuses(client: FlaskClient) -> None:
    post = fetch(client)["paths"][HOOK]["post"]
    (route,) = [p for p in post["parameters"] if p["name"] == "route"]
    assert route["in"] == "path"
    assert route["schema"]["enum"] == ["by-email", "zap", "zap-ack", "zap-lost"]
    assert any(p["name"] == "dry_run" and p["in"] == "query" for p in post["parameters"])

    responses = post["responses"]
    assert sorted(responses) == DOCUMENTED_STATUSES
    answer = {"$ref": "#/components/schemas/HookAnswer"}
    problem = {"$ref": "#/components/schemas/Problem"}
    for status in ("200", "202"):
        assert responses[status]["content"] == {"application/json": {"schema": answer}}
    for status in DOCUMENTED_STATUSES[2:]:
        assert responses[status]["content"] == {"application/problem+json": {"schema": problem}}
    for status in ("409", "503"):
        assert "Retry-After" in responses[status]["headers"]
    # No SOAP route configured: no XML is offered.
    assert "text/xml" not in post["requestBody"]["content"]


def test_salesforce_route_adds_its_xml_bodies(make_app: Callable[..., Flask]) -> None:
    client = make_app(DEFAULT_ROUTES + SALESFORCE_ROUTE).test_client()
    document = fetch(client)
    validate(document)
    post = document["paths"][HOOK]["post"]
    assert "sf-opportunity-lost" in post["parameters"][0]["schema"]["enum"]
    assert "text/xml" in post["requestBody"]["content"]
    assert "text/xml" in post["responses"]["200"]["content"]
    assert "text/xml" in post["responses"]["401"]["content"]


def test_components_come_from_the_real_schemas(client: FlaskClient) -> None:
    document = fetch(client)
    schemas = document["components"]["schemas"]
    event = schemas["Event"]
    assert set(event["properties"]) == EVENT_FIELDS
    assert set(event["required"]) == {"id", "calendar_id"}
    assert event["properties"]["attendees"]["items"] == {"$ref": "#/components/schemas/Attendee"}

    outcome = schemas["HookAnswer"]["properties"]["outcome"]
    assert set(outcome["enum"]) == {
        "canceled", "already_canceled", "ignored", "queued", "not_found", "failed", "partial",
        "dry_run",
    }  # fmt: skip
    assert {"type", "title", "status", "detail", "errors", "delivery_id", "reason"} <= set(
        schemas["Problem"]["properties"]
    )
    route = schemas["RouteConfig"]
    assert set(route["required"]) == {"preset", "target", "note"}
    assert "hubspot-workflow" in route["properties"]["preset"]["enum"]
    assert route["additionalProperties"] is False
    assert {"Delivery", "DeliveryList", "LinkBody", "LinkList"} <= set(schemas)


def test_every_endpoint_is_documented(client: FlaskClient) -> None:
    document = fetch(client)
    paths = document["paths"]
    expected = {
        HOOK: {"post"},
        "/meetbit/webhooks": {"post"},
        "/admin/deliveries": {"get"},
        "/admin/deliveries/{id}": {"get"},
        "/admin/deliveries/{id}/replay": {"post"},
        "/admin/links": {"get"},
        "/admin/links/{key}": {"get", "put", "delete"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/openapi.json": {"get"},
    }
    assert {path: set(ops) for path, ops in paths.items()} == expected
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "BRIDGE_ADMIN_TOKEN",
    }
    for path, operations in paths.items():
        for operation in operations.values():
            secured = operation.get("security") == [{"bearerAuth": []}]
            assert secured == path.startswith("/admin/"), path


def test_admin_filters_and_the_links_listing_are_documented(client: FlaskClient) -> None:
    document = fetch(client)
    paths, schemas = document["paths"], document["components"]["schemas"]
    params = {p["name"]: p for p in paths["/admin/deliveries"]["get"]["parameters"]}
    assert set(params) == {
        "status", "route", "since", "outcome", "state", "search", "cursor", "limit"
    }  # fmt: skip
    assert "email" in params["search"]["description"]
    assert params["since"]["schema"] == {"type": "string"}
    assert "`2h`" in params["since"]["description"]
    assert params["state"]["schema"]["enum"] == ["final", "retrying"]
    assert "canceled" in params["outcome"]["schema"]["enum"]
    # One page cap, the same for deliveries and links.
    links = paths["/admin/links"]["get"]
    link_params = {p["name"]: p for p in links["parameters"]}
    assert set(link_params) == {"cursor", "limit"}
    for limit in (params["limit"], link_params["limit"]):
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)
    assert links["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LinkPage"
    }
    assert "invalid-query" in links["responses"]["422"]["description"]
    entry = schemas["LinkEntry"]["properties"]
    assert set(entry) == {"key", "calendar_id", "event_id", "created_at"}
    assert set(schemas["LinkPage"]["properties"]) == {"links", "next_cursor"}
    # Path parameters are declared on each operation of their path.
    for operation in paths["/admin/links/{key}"].values():
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == ["key"]
