"""Zendesk, Pipedrive, Freshdesk, Salesforce and the signed webhook against their fakes: the
exact request (path, headers, JSON), 401/403 ending `dead` after the route's attempts, the
vendor's throttle with Retry-After, and the uncertain attempt with and without the write
already made. (HubSpot's are test_writeback_hubspot.py.)"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from bridge.sandbox.vendors import (
    FreshdeskFake,
    PipedriveFake,
    SalesforceFake,
    VendorFake,
    WebhookReceiver,
    ZendeskFake,
)
from tests.writeback_helpers import drain, jobs, post, route_yaml, runner

TEXT = "Meeting {{ result.event_id }} canceled ({{ result.outcome }})"
OPPORTUNITY = "0065g00000AbCdEAAA"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Spec:
    """One sink against its fake."""

    to: str
    fake: Callable[[], VendorFake]
    entry: Callable[[VendorFake], dict[str, Any]]
    env: Callable[[VendorFake], dict[str, str]]
    wrong: dict[str, str]  # credentials answered 401
    denied: Callable[[VendorFake], dict[str, str]]  # answered 403
    record: str  # what the webhook's `deal` field holds
    write: tuple[str, str]  # method and path of the write
    body: Callable[[str], Any]  # the exact JSON of the write, given the text
    headers: Callable[[VendorFake], dict[str, str]]
    text_of: Callable[[dict[str, Any]], str]
    lookup: str | None  # path of the marker look-up (None: the webhook has none)
    wrong_status: int = 401
    extra: dict[str, Any] = field(default_factory=dict)


def _zendesk_env(fake: Any) -> dict[str, str]:
    return {"ZD_EMAIL": fake.email, "ZD_TOKEN": fake.api_token}


def _salesforce_env(fake: Any) -> dict[str, str]:
    return {"SF_ID": fake.client_id, "SF_SECRET": fake.client_secret}


SPECS = [
    Spec(
        to="zendesk-comment",
        fake=ZendeskFake,
        entry=lambda f: {"email_env": "ZD_EMAIL", "api_token_env": "ZD_TOKEN"},
        env=_zendesk_env,
        wrong={"ZD_EMAIL": "agent@sandbox.zendesk.test", "ZD_TOKEN": "nope"},
        denied=lambda f: {"ZD_EMAIL": f.email, "ZD_TOKEN": f.denied_token},  # type: ignore[attr-defined]
        record="4242",
        write=("PUT", "/api/v2/tickets/4242"),
        body=lambda text: {
            "ticket": {
                "comment": {"body": text, "public": False},
                "additional_tags": ["meetbit_bridge"],
            }
        },
        headers=lambda f: {
            "Authorization": _basic(f"{f.email}/token", f.api_token)  # type: ignore[attr-defined]
        },
        text_of=lambda r: str(r["body"]),
        lookup="/api/v2/tickets/4242/comments",
    ),
    Spec(
        to="pipedrive-note",
        fake=PipedriveFake,
        entry=lambda f: {"api_token_env": "PD_TOKEN", "object": "deal"},
        env=lambda f: {"PD_TOKEN": f.api_token},  # type: ignore[attr-defined]
        wrong={"PD_TOKEN": "nope"},
        denied=lambda f: {"PD_TOKEN": f.denied_token},  # type: ignore[attr-defined]
        record="42",
        write=("POST", "/api/v1/notes"),
        body=lambda text: {"content": text, "deal_id": 42},
        headers=lambda f: {"x-api-token": f.api_token},  # type: ignore[attr-defined]
        text_of=lambda r: str(r["content"]),
        lookup="/api/v1/notes",
    ),
    Spec(
        to="freshdesk-note",
        fake=FreshdeskFake,
        entry=lambda f: {"api_key_env": "FD_KEY"},
        env=lambda f: {"FD_KEY": f.api_key},  # type: ignore[attr-defined]
        wrong={"FD_KEY": "nope"},
        denied=lambda f: {"FD_KEY": f.denied_key},  # type: ignore[attr-defined]
        record="4242",
        write=("POST", "/api/v2/tickets/4242/notes"),
        body=lambda text: {"body": text, "private": True},
        headers=lambda f: {"Authorization": _basic(f.api_key, "X")},  # type: ignore[attr-defined]
        text_of=lambda r: str(r["body_text"]),
        lookup="/api/v2/tickets/4242/conversations",
    ),
    Spec(
        to="salesforce-task",
        fake=SalesforceFake,
        entry=lambda f: {"client_id_env": "SF_ID", "client_secret_env": "SF_SECRET"},
        env=_salesforce_env,
        wrong={"SF_ID": "salesforce-sandbox-client-id", "SF_SECRET": "nope"},
        denied=lambda f: {"SF_ID": "someone-else", "SF_SECRET": "nope"},
        record=OPPORTUNITY,
        write=("POST", "/services/data/v62.0/sobjects/Task"),
        body=lambda text: {
            "Subject": text,
            "Description": text,
            "WhatId": OPPORTUNITY,
            "Status": "Completed",
        },
        headers=lambda f: {},  # the token is the fake's own: checked below
        text_of=lambda r: str(r["Description"]),
        lookup="/services/data/v62.0/query",
        wrong_status=400,  # the token endpoint's `invalid_client`
    ),
    Spec(
        to="webhook",
        fake=WebhookReceiver,
        entry=lambda f: {"secret_env": "WH_SECRET"},
        env=lambda f: {"WH_SECRET": f.secret},  # type: ignore[attr-defined]
        wrong={"WH_SECRET": "whsec_" + base64.b64encode(b"some other key").decode()},
        denied=lambda f: {"WH_SECRET": "whsec_" + base64.b64encode(b"yet another").decode()},
        record="",
        write=("POST", "/"),
        body=lambda text: None,  # checked below: the outcome, signed
        headers=lambda f: {"Content-Type": "application/json"},
        text_of=lambda r: str(r["payload"]["data"]["text"]),
        lookup=None,
    ),
]


@pytest.fixture(params=SPECS, ids=[s.to for s in SPECS])
def spec(request: pytest.FixtureRequest) -> Spec:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def fake(spec: Spec) -> Iterator[VendorFake]:
    with spec.fake() as started:
        yield started


def entry_of(spec: Spec, fake: VendorFake) -> dict[str, Any]:
    entry: dict[str, Any] = {"to": spec.to, "text": TEXT, **spec.entry(fake)}
    if spec.to == "webhook":
        entry["url"] = f"{fake.base_url}/"
    else:
        entry["base_url"] = fake.base_url
        entry["record"] = "{{ payload.deal }}"
    return entry


def make(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake, env: dict[str, str], **kw: Any
) -> Flask:
    return make_app(route_yaml(entry_of(spec, fake), **kw), **env)


def writes(spec: Spec, fake: VendorFake) -> list[Any]:
    return [r for r in fake.requests() if (r.method, r.path) == spec.write]


def test_the_write_is_exactly_the_vendors(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake
) -> None:
    app = make(make_app, spec, fake, spec.env(fake))
    answer = post(app, 601, deal=spec.record)
    delivery_id = answer["delivery_id"]
    job = drain(runner(app), app, delivery_id)
    text = f"Meeting 601 canceled (canceled) [{delivery_id}]"
    [request] = writes(spec, fake)
    headers = {k.lower(): v for k, v in request.headers.items()}
    for name, value in spec.headers(fake).items():
        assert headers[name.lower()] == value
    if spec.to == "webhook":
        assert headers["webhook-id"] == job.id
        assert headers["webhook-signature"].startswith("v1,")
        data = request.json["data"]
        assert (data["outcome"], data["delivery_id"], data["text"]) == (
            "canceled",
            delivery_id,
            text,
        )
    else:
        assert headers["content-type"] == "application/json"
        assert request.json == spec.body(text)
    if spec.to == "salesforce-task":
        [token] = [r for r in fake.requests() if r.path == "/services/oauth2/token"]
        assert token.body.decode().startswith("grant_type=client_credentials&")
        assert headers["authorization"].startswith("Bearer ")
    [record] = fake.records()
    assert spec.text_of(record) == text
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert job.created_id


@pytest.mark.parametrize("refusal", ["wrong", "denied"])
def test_refused_credentials_end_dead_after_the_routes_attempts(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake, refusal: str
) -> None:
    env = spec.wrong if refusal == "wrong" else spec.denied(fake)
    app = make(make_app, spec, fake, env, max_attempts=2)
    answer = post(app, 602, deal=spec.record)
    assert answer["outcome"] == "canceled"
    job = drain(runner(app), app, answer["delivery_id"])
    assert (job.status, job.attempts, job.created_id) == ("dead", 2, None)
    assert fake.records() == []
    statuses = {r.status for r in fake.requests()}
    expected = {spec.wrong_status} if refusal == "wrong" else {spec.wrong_status, 403, 401}
    assert statuses and statuses <= expected


def test_the_vendors_throttle_pauses_for_retry_after_then_writes_once(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake
) -> None:
    app = make(make_app, spec, fake, spec.env(fake))
    fake.modes.throttle(1, retry_after=1)
    answer = post(app, 603, deal=spec.record)
    run = runner(app)
    assert run.run_once()
    [job] = jobs(app, answer["delivery_id"])
    assert job.status == "failed" and job.next_attempt_at is not None
    throttled_at = fake.requests()[0].at
    job = drain(run, app, answer["delivery_id"])
    assert job.status == "succeeded"
    assert len(fake.records()) == 1
    [write] = [r for r in writes(spec, fake) if r.accepted]
    assert write.at - throttled_at >= 1.0  # Retry-After, not just the tiny test backoff


def test_an_uncertain_attempt_without_the_write_looks_then_writes(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake
) -> None:
    app = make(make_app, spec, fake, spec.env(fake))
    answer = post(app, 604, deal=spec.record)
    # The first request fails with a 503 (for Salesforce that is the token: the marker is
    # looked for all the same, which costs one query).
    fake.modes.fail(1, status=503)
    job = drain(runner(app), app, answer["delivery_id"])
    assert job.status == "succeeded"
    assert len(fake.records()) == 1
    if spec.lookup is not None:
        assert any(r.path == spec.lookup for r in fake.requests())


def test_an_uncertain_attempt_that_wrote_finds_it_and_writes_no_second(
    make_app: Callable[..., Flask], spec: Spec, fake: VendorFake
) -> None:
    app = make(make_app, spec, fake, spec.env(fake))
    fake.modes.write_then_drop()
    answer = post(app, 605, deal=spec.record)
    job = drain(runner(app), app, answer["delivery_id"])
    assert job.status == "succeeded"
    if spec.lookup is None:
        # A webhook cannot be asked: it is sent again under the same webhook-id, which the
        # receiver sees as a duplicate of the one it stored.
        first, again = fake.records()
        assert first["webhook_id"] == again["webhook_id"] == job.id
        assert (first["duplicate"], again["duplicate"]) == (False, True)
        return
    [record] = fake.records()
    assert spec.text_of(record).endswith(f"[{answer['delivery_id']}]")
    assert len(writes(spec, fake)) == 1
    assert any(r.path == spec.lookup for r in fake.requests())
    assert job.created_id is not None
