"""The vendor fakes accept what each vendor documents, refuse everything else in the vendor's own
error shape, find the delivery marker on look-ups, and misbehave on demand (429, slow, 5xx, a
write whose answer is lost). Every call is a real HTTP request with `requests`."""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from bridge.sandbox import SandboxServer
from bridge.sandbox.vendors import (
    FreshdeskFake,
    HubSpotFake,
    PipedriveFake,
    SalesforceFake,
    VendorFake,
    WebhookReceiver,
    ZendeskFake,
    sign_standard_webhook,
)
from bridge.testing import wsgi_server

TIMEOUT = 5


class Receiver:
    """A plain HTTP endpoint that records the JSON it gets (a trigger's target)."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.arrived = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self.arrived:
            self.received.append(request.get_json())
            self.arrived.notify_all()
        return Response("ok")(environ, start_response)

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Any]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


def fresh(fake: VendorFake) -> VendorFake:
    fake.reset()
    return fake


# --- HubSpot -----------------------------------------------------------------------------------

HUBSPOT_AUTH = {"Authorization": "Bearer pat-na1-sandbox-hubspot"}
NOTE = {
    "properties": {
        "hs_note_body": "MeetBit meeting Demo canceled (canceled) [dlv_01HZX4]",
        "hs_timestamp": "2026-12-04T02:00:00.000Z",
    },
    "associations": [
        {
            "to": {"id": "9876543210"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 214}],
        }
    ],
}


@pytest.fixture(scope="module")
def _hubspot() -> Iterator[HubSpotFake]:
    with HubSpotFake() as fake:
        yield fake


@pytest.fixture
def hubspot(_hubspot: HubSpotFake) -> HubSpotFake:
    _hubspot.reset()
    return _hubspot


def post_note(
    fake: VendorFake, body: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/crm/v3/objects/notes",
        json=NOTE if body is None else body,
        headers=HUBSPOT_AUTH if headers is None else headers,
        timeout=kwargs.pop("timeout", TIMEOUT),
        **kwargs,
    )


def search_notes(fake: VendorFake, body: Any) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/crm/v3/objects/notes/search",
        json=body,
        headers=HUBSPOT_AUTH,
        timeout=TIMEOUT,
    )


def marker_search(marker: str, deal: str = "9876543210") -> dict[str, Any]:
    return {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "hs_note_body", "operator": "CONTAINS_TOKEN", "value": marker},
                    {"propertyName": "associations.deal", "operator": "EQ", "value": deal},
                ]
            }
        ],
        "properties": ["hs_note_body"],
    }


def assert_hubspot_error(response: requests.Response, status: int, category: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == category
    assert body["message"]
    assert len(body["correlationId"]) == 36


@pytest.mark.parametrize(
    ("type_id", "kind"), [(214, "deals"), (228, "tickets"), (202, "contacts"), (190, "companies")]
)
def test_hubspot_creates_a_note_on_each_kind_of_record(
    hubspot: HubSpotFake, type_id: int, kind: str
) -> None:
    body = copy.deepcopy(NOTE)
    body["associations"][0]["types"][0]["associationTypeId"] = type_id
    response = post_note(hubspot, body)
    assert response.status_code == 201, response.text
    note = response.json()
    assert note["id"].isdigit()
    assert note["archived"] is False
    assert note["properties"]["hs_note_body"] == NOTE["properties"]["hs_note_body"]
    assert note["properties"]["hs_timestamp"] == "2026-12-04T02:00:00.000Z"
    assert note["properties"]["hs_object_id"] == note["id"]
    assert response.headers["X-HubSpot-RateLimit-Max"] == "100"
    assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert response.headers["X-HubSpot-RateLimit-Remaining"] == "99"
    [stored] = hubspot.records()
    assert stored["id"] == note["id"]
    singular = {"deals": "deal", "tickets": "ticket", "contacts": "contact", "companies": "company"}
    assert stored["associations"] == {
        kind: {"results": [{"id": "9876543210", "type": f"note_to_{singular[kind]}"}]}
    }
    [received] = hubspot.accepted()
    assert received.path == "/crm/v3/objects/notes"
    assert received.headers["Authorization"] == HUBSPOT_AUTH["Authorization"]
    assert received.json == body
    assert received.created_id == note["id"]
    # The note reads back with its association.
    read = requests.get(
        f"{hubspot.base_url}/crm/v3/objects/notes/{note['id']}", headers=HUBSPOT_AUTH, timeout=5
    )
    assert read.status_code == 200
    assert read.json()["associations"][kind]["results"][0]["id"] == "9876543210"


def test_hubspot_accepts_a_millisecond_timestamp(hubspot: HubSpotFake) -> None:
    body = copy.deepcopy(NOTE)
    body["properties"]["hs_timestamp"] = "1796349600000"
    response = post_note(hubspot, body)
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["hs_timestamp"] == "2026-12-04T02:00:00.000Z"


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(body: dict[str, Any]) -> None:
        node: Any = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[int(last) if last.isdigit() else last]

    return mutate


def _setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(body: dict[str, Any]) -> None:
        node: Any = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


ASSOC = "associations.0"
HUBSPOT_MALFORMED = {
    "missing_hs_timestamp": _without("properties.hs_timestamp"),
    "missing_hs_note_body": _without("properties.hs_note_body"),
    "blank_body": _setting("properties.hs_note_body", "  "),
    "bad_timestamp": _setting("properties.hs_timestamp", "yesterday"),
    "naive_timestamp": _setting("properties.hs_timestamp", "2026-12-04T02:00:00"),
    "unknown_property": _setting("properties.dealname", "x"),
    "number_property": _setting("properties.hs_timestamp", 1796349600000),
    "no_properties": _without("properties"),
    "no_associations": _without("associations"),
    "empty_associations": _setting("associations", []),
    "unknown_top_level": _setting("archived", False),
    "id_not_a_string": _setting(f"{ASSOC}.to.id", 9876543210),
    "id_not_digits": _setting(f"{ASSOC}.to.id", "deal-1"),
    "no_to": _without(f"{ASSOC}.to"),
    "no_types": _without(f"{ASSOC}.types"),
    "user_defined": _setting(f"{ASSOC}.types.0.associationCategory", "USER_DEFINED"),
    "bad_category": _setting(f"{ASSOC}.types.0.associationCategory", "hubspot_defined"),
    "contact_to_deal_type": _setting(f"{ASSOC}.types.0.associationTypeId", 3),
    "type_as_string": _setting(f"{ASSOC}.types.0.associationTypeId", "214"),
    "no_category": _without(f"{ASSOC}.types.0.associationCategory"),
}


@pytest.mark.parametrize("case", sorted(HUBSPOT_MALFORMED))
def test_hubspot_refuses_each_malformed_note(hubspot: HubSpotFake, case: str) -> None:
    body = copy.deepcopy(NOTE)
    HUBSPOT_MALFORMED[case](body)
    response = post_note(hubspot, body)
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert hubspot.records() == []
    [refused] = hubspot.refused()
    assert refused.status == 400 and refused.reason


def test_hubspot_refuses_a_note_on_a_missing_record(hubspot: HubSpotFake) -> None:
    hubspot.missing_ids.add("9876543210")
    response = post_note(hubspot)
    assert_hubspot_error(response, 400, "VALIDATION_ERROR")
    assert "does not exist" in response.json()["message"]
    assert hubspot.refused()[0].reason == "association_missing"


def test_hubspot_refuses_other_content_types_and_bad_json(hubspot: HubSpotFake) -> None:
    url = f"{hubspot.base_url}/crm/v3/objects/notes"
    form = requests.post(url, data={"a": "b"}, headers=HUBSPOT_AUTH, timeout=TIMEOUT)
    assert_hubspot_error(form, 415, "VALIDATION_ERROR")
    broken = requests.post(
        url,
        data=b'{"properties": ',
        headers={**HUBSPOT_AUTH, "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert_hubspot_error(broken, 400, "VALIDATION_ERROR")
    assert [r.reason for r in hubspot.refused()] == ["content_type", "invalid_json"]


@pytest.mark.parametrize(
    ("headers", "status", "category", "reason"),
    [
        ({}, 401, "INVALID_AUTHENTICATION", "missing_auth"),
        (
            {"Authorization": "pat-na1-sandbox-hubspot"},
            401,
            "INVALID_AUTHENTICATION",
            "missing_auth",
        ),
        ({"Authorization": "Basic cGF0Og=="}, 401, "INVALID_AUTHENTICATION", "missing_auth"),
        ({"Authorization": "Bearer pat-na1-wrong"}, 401, "INVALID_AUTHENTICATION", "wrong_token"),
        (
            {"Authorization": "Bearer pat-na1-sandbox-noscope"},
            403,
            "MISSING_SCOPES",
            "missing_scopes",
        ),
    ],
)
def test_hubspot_enforces_the_private_app_token(
    hubspot: HubSpotFake, headers: dict[str, str], status: int, category: str, reason: str
) -> None:
    response = post_note(hubspot, headers=headers)
    assert_hubspot_error(response, status, category)
    assert hubspot.records() == []
    assert hubspot.refused()[0].reason == reason
    # Search is guarded the same way.
    search = requests.post(
        f"{hubspot.base_url}/crm/v3/objects/notes/search", json={}, headers=headers, timeout=5
    )
    assert_hubspot_error(search, status, category)


def test_hubspot_search_finds_the_marker_on_the_record(hubspot: HubSpotFake) -> None:
    assert post_note(hubspot).status_code == 201
    other = copy.deepcopy(NOTE)
    other["properties"]["hs_note_body"] = "Another note [dlv_01HZX5]"
    assert post_note(hubspot, other).status_code == 201

    found = search_notes(hubspot, marker_search("[dlv_01HZX4]"))
    assert found.status_code == 200, found.text
    answer = found.json()
    assert answer["total"] == 1
    [note] = answer["results"]
    assert note["properties"]["hs_note_body"].endswith("[dlv_01HZX4]")
    assert set(note["properties"]) == {
        "hs_note_body", "hs_createdate", "hs_lastmodifieddate", "hs_object_id",
    }  # fmt: skip
    assert "paging" not in answer
    # Not on another deal, and not a marker that was never written.
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]", deal="1")).json()["total"] == 0
    assert search_notes(hubspot, marker_search("[dlv_01HZX9]")).json()["total"] == 0
    # A wildcard completes a partial word; an empty body lists every note, paged.
    assert search_notes(hubspot, marker_search("dlv_01HZX*")).json()["total"] == 2
    page = search_notes(hubspot, {"limit": 1}).json()
    assert page["total"] == 2 and page["paging"] == {"next": {"after": "1"}}


def one_filter(name: str, operator: str, value: str | None = None) -> dict[str, Any]:
    spec = {"propertyName": name, "operator": operator}
    if value is not None:
        spec["value"] = value
    return {"filterGroups": [{"filters": [spec]}]}


@pytest.mark.parametrize(
    "body",
    [
        one_filter("hs_note_body", "LIKE", "x"),
        one_filter("hs_note_body", "GT", "x"),
        one_filter("dealname", "EQ", "x"),
        one_filter("hs_note_body", "EQ"),
        one_filter("associations.deal", "CONTAINS_TOKEN", "1"),
        {"filterGroups": [{"filters": []}] * 6},
        {"limit": 500},
        {"query": "dlv"},
    ],
)
def test_hubspot_search_refuses_what_it_does_not_know(hubspot: HubSpotFake, body: Any) -> None:
    assert_hubspot_error(search_notes(hubspot, body), 400, "VALIDATION_ERROR")


def test_hubspot_search_lags_behind_writes_when_asked(hubspot: HubSpotFake) -> None:
    hubspot.search_lag = 60
    assert post_note(hubspot).status_code == 201
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]")).json()["total"] == 0
    hubspot.search_lag = 0
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]")).json()["total"] == 1


def test_hubspot_counts_100_requests_per_window_strictly(hubspot: HubSpotFake) -> None:
    # HubSpot's window is 10 s (the headers above say so); a minute here, so that a loaded
    # machine cannot spread the 101 requests over two windows.
    hubspot.rate_limit(100, 60.0)
    with requests.Session() as session:
        statuses = [
            session.post(
                f"{hubspot.base_url}/crm/v3/objects/notes",
                json=NOTE,
                headers=HUBSPOT_AUTH,
                timeout=TIMEOUT,
            )
            for _ in range(101)
        ]
    assert [r.status_code for r in statuses[:100]] == [201] * 100
    assert statuses[99].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    limited = statuses[100]
    assert limited.status_code == 429
    body = limited.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["status"] == "error" and body["correlationId"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert len(hubspot.records()) == 100
    assert hubspot.max_in_window(60.0) == 100
    assert hubspot.refused()[0].reason == "rate_limited"


def test_hubspot_search_has_a_limit_of_its_own(hubspot: HubSpotFake) -> None:
    hubspot.endpoint_rate_limit("search_notes", 5, 60.0)  # HubSpot's is 5 per second
    answers = [search_notes(hubspot, {}) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[5].json()["policyName"] == "SECONDLY"
    # Searches are not counted in the notes' window.
    assert post_note(hubspot).headers["X-HubSpot-RateLimit-Remaining"] == "99"


# --- the modes, on the HubSpot fake ---------------------------------------------------------


def test_throttle_answers_429_with_retry_after_for_the_next_n(hubspot: HubSpotFake) -> None:
    hubspot.modes.throttle(2, retry_after=7)
    first, second, third = (post_note(hubspot) for _ in range(3))
    for limited in (first, second):
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
        assert limited.json()["errorType"] == "RATE_LIMIT"
    assert third.status_code == 201
    assert len(hubspot.records()) == 1


def test_fail_answers_5xx_and_writes_nothing(hubspot: HubSpotFake) -> None:
    hubspot.modes.fail(None, status=503)  # until cleared
    assert [post_note(hubspot).status_code for _ in range(3)] == [503] * 3
    assert hubspot.records() == []
    hubspot.modes.clear()
    assert post_note(hubspot).status_code == 201


def test_slow_stores_the_write_and_holds_the_answer(hubspot: HubSpotFake) -> None:
    hubspot.modes.slow(2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post_note(hubspot, timeout=(3.05, 0.2))
    # The client gave up; the note exists all the same (an uncertain attempt).
    [note] = hubspot.wait_for_records(1)
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]")).json()["total"] == 1
    assert note["properties"]["hs_note_body"].endswith("[dlv_01HZX4]")


def test_write_then_fail_stores_the_note_and_answers_5xx(hubspot: HubSpotFake) -> None:
    hubspot.modes.write_then_fail(status=502)
    response = post_note(hubspot)
    assert response.status_code == 502
    assert len(hubspot.records()) == 1
    [received] = hubspot.requests()
    assert received.stored and received.reason == "stored_then_502"
    # Look-ups are not writes: they answer normally.
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]")).json()["total"] == 1


def test_write_then_drop_stores_the_note_and_closes_the_connection(hubspot: HubSpotFake) -> None:
    hubspot.modes.write_then_drop()
    with pytest.raises(requests.exceptions.ConnectionError):
        post_note(hubspot)
    assert len(hubspot.records()) == 1
    assert hubspot.requests()[0].reason == "stored_then_dropped"
    assert post_note(hubspot).status_code == 201  # only the next write


def test_random_failures_and_latency_come_from_the_knobs(hubspot: HubSpotFake) -> None:
    hubspot.knobs.failure_rate = 1.0
    assert post_note(hubspot).status_code == 500
    hubspot.knobs.failure_rate = 0.0
    assert post_note(hubspot).status_code == 201


def test_the_trigger_fires_after_each_write_and_stops_by_itself(hubspot: HubSpotFake) -> None:
    seen: list[str] = []
    done = threading.Condition()

    def again(record: dict[str, Any]) -> None:
        with done:
            seen.append(record["id"])
            done.notify_all()

    hubspot.on_write(again, limit=2)
    ids = [post_note(hubspot).json()["id"] for _ in range(3)]
    with done:
        done.wait_for(lambda: len(seen) >= 2, 3)
    hubspot.join_triggers()
    assert sorted(seen) == sorted(ids[:2])
    assert hubspot.triggered == 2
    # Refused requests write nothing and fire nothing.
    hubspot.on_write(again)
    post_note(hubspot, headers={})
    hubspot.join_triggers()
    assert len(seen) == 2


def test_the_trigger_can_post_to_a_url() -> None:
    receiver = Receiver()
    with wsgi_server(receiver) as url, HubSpotFake() as hubspot:
        hubspot.on_write(url, limit=1)
        note_id = post_note(hubspot).json()["id"]
        [posted] = receiver.wait_for(1)
        assert posted["vendor"] == "hubspot"
        assert posted["record"]["id"] == note_id


def test_an_unknown_path_gets_the_vendors_404(hubspot: HubSpotFake) -> None:
    response = requests.get(f"{hubspot.base_url}/crm/v3/objects/nope", timeout=TIMEOUT)
    assert_hubspot_error(response, 404, "OBJECT_NOT_FOUND")
    wrong_method = requests.delete(f"{hubspot.base_url}/crm/v3/objects/notes", timeout=TIMEOUT)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["status"] == "error"


# --- mounted in the sandbox --------------------------------------------------------------------


def test_the_sandbox_serves_the_fakes_under_its_own_port(sandbox: SandboxServer) -> None:
    hubspot = sandbox.vendors["hubspot"]
    assert hubspot.base_url == f"{sandbox.url}/hubspot"
    assert post_note(hubspot).status_code == 201
    assert len(hubspot.records()) == 1
    # Over HTTP, for a sandbox in another process.
    got = requests.get(f"{hubspot.base_url}/_fake/requests", timeout=TIMEOUT).json()
    assert [(r["method"], r["path"], r["status"]) for r in got] == [
        ("POST", "/hubspot/crm/v3/objects/notes", 201)
    ]
    records = requests.get(f"{hubspot.base_url}/_fake/records", timeout=TIMEOUT).json()
    assert records[0]["properties"]["hs_note_body"].endswith("[dlv_01HZX4]")
    armed = requests.post(
        f"{hubspot.base_url}/_fake/modes", json={"throttle": {"count": 1}}, timeout=TIMEOUT
    )
    assert armed.status_code == 200
    assert post_note(hubspot).status_code == 429
    bad = requests.post(f"{hubspot.base_url}/_fake/modes", json={"explode": {}}, timeout=5)
    assert bad.status_code == 400
    # Unknown paths under the prefix answer like HubSpot; MeetBit's API is untouched.
    assert_hubspot_error(
        requests.get(f"{hubspot.base_url}/nope", timeout=TIMEOUT), 404, "OBJECT_NOT_FOUND"
    )
    requests.post(f"{hubspot.base_url}/_fake/reset", timeout=TIMEOUT)
    assert hubspot.records() == [] and hubspot.requests() == []


def test_resetting_the_sandbox_resets_its_fakes(sandbox: SandboxServer) -> None:
    hubspot = sandbox.vendors["hubspot"]
    post_note(hubspot)
    hubspot.modes.fail(None)
    sandbox.reset()
    assert hubspot.records() == []
    assert post_note(hubspot).status_code == 201


# --- one fake of each vendor, on its own port, per module ------------------------------------


@pytest.fixture(scope="module")
def _fakes() -> Iterator[dict[str, VendorFake]]:
    fakes: dict[str, VendorFake] = {
        "zendesk": ZendeskFake(),
        "pipedrive": PipedriveFake(),
        "freshdesk": FreshdeskFake(),
        "salesforce": SalesforceFake(),
        "webhook": WebhookReceiver(),
    }
    for fake in fakes.values():
        fake.start()
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture
def zendesk(_fakes: dict[str, VendorFake]) -> ZendeskFake:
    fake = fresh(_fakes["zendesk"])
    assert isinstance(fake, ZendeskFake)
    return fake


@pytest.fixture
def pipedrive(_fakes: dict[str, VendorFake]) -> PipedriveFake:
    fake = fresh(_fakes["pipedrive"])
    assert isinstance(fake, PipedriveFake)
    return fake


@pytest.fixture
def freshdesk(_fakes: dict[str, VendorFake]) -> FreshdeskFake:
    fake = fresh(_fakes["freshdesk"])
    assert isinstance(fake, FreshdeskFake)
    return fake


@pytest.fixture
def salesforce(_fakes: dict[str, VendorFake]) -> SalesforceFake:
    fake = fresh(_fakes["salesforce"])
    assert isinstance(fake, SalesforceFake)
    return fake


@pytest.fixture
def receiver(_fakes: dict[str, VendorFake]) -> WebhookReceiver:
    fake = fresh(_fakes["webhook"])
    assert isinstance(fake, WebhookReceiver)
    return fake


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- Zendesk -----------------------------------------------------------------------------------

ZENDESK_TOKEN = "zendesk-sandbox-api-token"
END_USER = "zendesk-sandbox-end-user-token"
ZENDESK_AUTH = _basic("agent@sandbox.zendesk.test/token", ZENDESK_TOKEN)
ZENDESK_BODY = {
    "ticket": {
        "comment": {"body": "MeetBit meeting Demo canceled [dlv_01HZX4]", "public": False},
        "additional_tags": ["meetbit_bridge"],
    }
}


def put_ticket(
    fake: VendorFake, body: Any = None, headers: dict[str, str] | None = None, ticket: int = 42
) -> requests.Response:
    return requests.put(
        f"{fake.base_url}/api/v2/tickets/{ticket}",
        json=ZENDESK_BODY if body is None else body,
        headers=ZENDESK_AUTH if headers is None else headers,
        timeout=TIMEOUT,
    )


def test_zendesk_adds_a_private_comment_and_the_tag(zendesk: ZendeskFake) -> None:
    response = put_ticket(zendesk)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ticket"]["id"] == 42 and answer["ticket"]["tags"] == ["meetbit_bridge"]
    comment = answer["audit"]["events"][0]
    assert comment["type"] == "Comment" and comment["public"] is False
    assert comment["body"].endswith("[dlv_01HZX4]")
    assert {"type": "Change", "field_name": "tags"}.items() <= answer["audit"]["events"][1].items()
    [record] = zendesk.records()
    assert record["ticket_id"] == 42 and record["id"] == comment["id"]
    assert zendesk.accepted()[0].created_id == str(comment["id"])
    # The OAuth bearer token works as well, and `.json` paths are Zendesk's too.
    bearer = {"Authorization": "Bearer zendesk-sandbox-oauth-token"}
    again = requests.put(
        f"{zendesk.base_url}/api/v2/tickets/42.json", json=ZENDESK_BODY, headers=bearer, timeout=5
    )
    assert again.status_code == 200


def test_zendesk_comments_list_finds_the_marker(zendesk: ZendeskFake) -> None:
    url = f"{zendesk.base_url}/api/v2/tickets/42/comments"
    before = requests.get(url, headers=ZENDESK_AUTH, timeout=TIMEOUT).json()
    # A ticket starts with its description, written by the requester.
    assert before["count"] == 1 and "[dlv_01HZX4]" not in before["comments"][0]["body"]
    put_ticket(zendesk)
    after = requests.get(url, headers=ZENDESK_AUTH, timeout=TIMEOUT).json()
    assert after["count"] == 2 and after["next_page"] is None
    assert after["comments"][1]["body"].endswith("[dlv_01HZX4]")
    desc = requests.get(url, params={"sort_order": "desc"}, headers=ZENDESK_AUTH, timeout=5)
    assert desc.json()["comments"][0]["body"].endswith("[dlv_01HZX4]")


ZENDESK_MALFORMED: dict[str, tuple[Any, int, str]] = {
    "no_ticket": ({"comment": {"body": "x", "public": False}}, 400, "ParameterMissing"),
    "no_comment": ({"ticket": {"additional_tags": ["meetbit_bridge"]}}, 422, "RecordInvalid"),
    "blank_body": ({"ticket": {"comment": {"body": " ", "public": False}}}, 422, "RecordInvalid"),
    "no_public": ({"ticket": {"comment": {"body": "x"}}}, 422, "RecordInvalid"),
    "public_string": (
        {"ticket": {"comment": {"body": "x", "public": "false"}}}, 422, "RecordInvalid",
    ),
    "tags_string": (
        {"ticket": {"comment": {"body": "x", "public": False}, "additional_tags": "a"}},
        422, "RecordInvalid",
    ),
    "tag_with_space": (
        {"ticket": {"comment": {"body": "x", "public": False}, "additional_tags": ["a b"]}},
        422, "RecordInvalid",
    ),
    "other_field": (
        {"ticket": {"comment": {"body": "x", "public": False}, "status": "solved"}},
        422, "RecordInvalid",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ZENDESK_MALFORMED))
def test_zendesk_refuses_each_malformed_update(zendesk: ZendeskFake, case: str) -> None:
    body, status, error = ZENDESK_MALFORMED[case]
    response = put_ticket(zendesk, body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error and response.json()["description"]
    assert zendesk.records() == []


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "missing_auth"),
        (_basic("agent@sandbox.zendesk.test", "password"), 401, "password_auth"),
        (_basic("agent@sandbox.zendesk.test/token", "wrong"), 401, "wrong_token"),
        (_basic("other@sandbox.zendesk.test/token", ZENDESK_TOKEN), 401, "wrong_token"),
        ({"Authorization": "Bearer wrong"}, 401, "wrong_token"),
        (_basic("agent@sandbox.zendesk.test/token", END_USER), 403, "forbidden"),
    ],
)  # fmt: skip
def test_zendesk_enforces_its_credentials(
    zendesk: ZendeskFake, headers: dict[str, str], status: int, reason: str
) -> None:
    response = put_ticket(zendesk, headers=headers)
    assert response.status_code == status
    expected = "Couldn't authenticate you" if status == 401 else "Forbidden"
    assert response.json()["error"] == expected
    assert zendesk.refused()[0].reason == reason and zendesk.records() == []


def test_zendesk_missing_ticket_and_throttle(zendesk: ZendeskFake) -> None:
    zendesk.missing_ids.add("77")
    missing = put_ticket(zendesk, ticket=77)
    assert missing.status_code == 404
    assert missing.json() == {"error": "RecordNotFound", "description": "Not found"}
    zendesk.modes.throttle(1, retry_after=30)
    limited = put_ticket(zendesk)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "30"
    assert limited.json()["error"] == "APIRateLimitExceeded"
    assert put_ticket(zendesk).status_code == 200


# --- Pipedrive ---------------------------------------------------------------------------------

PIPEDRIVE_AUTH = {"x-api-token": "pipedrive-sandbox-api-token"}


def post_pipedrive(
    fake: VendorFake, body: Any, headers: dict[str, str] | None = None, **kwargs: Any
) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/api/v1/notes",
        json=body,
        headers=PIPEDRIVE_AUTH if headers is None else headers,
        timeout=TIMEOUT,
        **kwargs,
    )


@pytest.mark.parametrize("target", ["deal_id", "person_id", "org_id"])
def test_pipedrive_adds_a_note_and_lists_it(pipedrive: PipedriveFake, target: str) -> None:
    response = post_pipedrive(pipedrive, {"content": "Canceled [dlv_01HZX4]", target: 7})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["success"] is True
    note = answer["data"]
    assert note[target] == 7 and note["content"] == "Canceled [dlv_01HZX4]"
    assert isinstance(note["id"], int) and note["active_flag"] is True
    listed = requests.get(
        f"{pipedrive.base_url}/api/v1/notes", params={target: 7}, headers=PIPEDRIVE_AUTH, timeout=5
    ).json()
    assert listed["success"] is True
    assert [n["content"] for n in listed["data"]] == ["Canceled [dlv_01HZX4]"]
    assert listed["additional_data"]["pagination"]["more_items_in_collection"] is False
    other = requests.get(
        f"{pipedrive.base_url}/api/v1/notes", params={target: 8}, headers=PIPEDRIVE_AUTH, timeout=5
    ).json()
    assert other["success"] is True and other["data"] is None  # v1 lists answer null when empty


@pytest.mark.parametrize(
    "body",
    [
        {"deal_id": 7},
        {"content": "", "deal_id": 7},
        {"content": 5, "deal_id": 7},
        {"content": "x"},
        {"content": "x", "deal_id": 7, "person_id": 8},
        {"content": "x", "deal_id": "7"},
        {"content": "x", "deal_id": 0},
        {"content": "x", "deal_id": 7, "pinned_to_deal_flag": 1},
        ["content"],
    ],
)
def test_pipedrive_refuses_each_malformed_note(pipedrive: PipedriveFake, body: Any) -> None:
    response = post_pipedrive(pipedrive, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["success"] is False and answer["error"] and answer["data"] is None
    assert answer["error_info"].startswith("Please check developers.pipedrive.com")
    assert pipedrive.records() == []


def test_pipedrive_auth_header_or_query_and_refusals(pipedrive: PipedriveFake) -> None:
    body = {"content": "x [dlv_1]", "deal_id": 7}
    assert post_pipedrive(pipedrive, body, headers={}).status_code == 401
    unauthorized = post_pipedrive(pipedrive, body, headers={"x-api-token": "nope"})
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": (
            "Please check developers.pipedrive.com for more information about Pipedrive API."
        ),
    }
    denied = post_pipedrive(pipedrive, body, headers={"x-api-token": "pipedrive-sandbox-no-access"})
    assert denied.status_code == 403 and denied.json()["success"] is False
    by_query = post_pipedrive(
        pipedrive, body, headers={}, params={"api_token": "pipedrive-sandbox-api-token"}
    )
    assert by_query.status_code == 201
    assert [r.reason for r in pipedrive.refused()] == ["missing_auth", "wrong_token", "forbidden"]


def test_pipedrive_missing_deal_and_its_429(pipedrive: PipedriveFake) -> None:
    pipedrive.missing_ids.add("9")
    missing = post_pipedrive(pipedrive, {"content": "x", "deal_id": 9})
    assert missing.status_code == 404 and missing.json()["error"] == "Deal not found"
    pipedrive.modes.throttle(1, retry_after=2)
    limited = post_pipedrive(pipedrive, {"content": "x", "deal_id": 7})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["errorCode"] == 429 and limited.json()["success"] is False
    assert limited.headers["x-ratelimit-remaining"] == "0"


# --- Freshdesk ---------------------------------------------------------------------------------

FRESHDESK_AUTH = _basic("freshdesk-sandbox-api-key", "X")


def post_freshdesk(
    fake: VendorFake, body: Any, headers: dict[str, str] | None = None, ticket: int = 5
) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/api/v2/tickets/{ticket}/notes",
        json=body,
        headers=FRESHDESK_AUTH if headers is None else headers,
        timeout=TIMEOUT,
    )


def test_freshdesk_adds_a_private_note_and_lists_it(freshdesk: FreshdeskFake) -> None:
    response = post_freshdesk(freshdesk, {"body": "Canceled [dlv_01HZX4]", "private": True})
    assert response.status_code == 201, response.text
    note = response.json()
    assert note["private"] is True and note["ticket_id"] == 5
    assert note["body_text"] == "Canceled [dlv_01HZX4]" and isinstance(note["id"], int)
    listed = requests.get(
        f"{freshdesk.base_url}/api/v2/tickets/5/conversations", headers=FRESHDESK_AUTH, timeout=5
    )
    assert listed.status_code == 200
    assert [c["body_text"] for c in listed.json()] == ["Canceled [dlv_01HZX4]"]
    empty = requests.get(
        f"{freshdesk.base_url}/api/v2/tickets/6/conversations", headers=FRESHDESK_AUTH, timeout=5
    )
    assert empty.json() == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"private": True}, "body", "missing_field"),
        ({"body": 5, "private": True}, "body", "datatype_mismatch"),
        ({"body": "x"}, "private", "datatype_mismatch"),
        ({"body": "x", "private": "true"}, "private", "datatype_mismatch"),
        ({"body": "x", "private": True, "public": False}, "public", "invalid_field"),
    ],
)
def test_freshdesk_refuses_each_malformed_note(
    freshdesk: FreshdeskFake, body: Any, field: str, code: str
) -> None:
    response = post_freshdesk(freshdesk, body)
    assert response.status_code == 400
    assert response.json()["description"] == "Validation failed"
    [error] = response.json()["errors"]
    assert error["field"] == field and error["code"] == code and error["message"]
    assert freshdesk.records() == []


def test_freshdesk_auth_content_type_and_missing_ticket(freshdesk: FreshdeskFake) -> None:
    body = {"body": "x", "private": True}
    unauthorized = post_freshdesk(freshdesk, body, headers=_basic("wrong-key", "X"))
    assert unauthorized.status_code == 401
    assert unauthorized.json()["code"] == "invalid_credentials"
    assert post_freshdesk(freshdesk, body, headers={}).status_code == 401
    denied = post_freshdesk(
        freshdesk, body, headers=_basic("freshdesk-sandbox-restricted-key", "X")
    )
    assert denied.status_code == 403 and denied.json()["code"] == "access_denied"
    form = requests.post(
        f"{freshdesk.base_url}/api/v2/tickets/5/notes",
        data=body,
        headers=FRESHDESK_AUTH,
        timeout=TIMEOUT,
    )
    assert form.status_code == 415 and form.json()["code"] == "invalid_content_type"
    freshdesk.missing_ids.add("404")
    missing = post_freshdesk(freshdesk, body, ticket=404)
    assert missing.status_code == 404 and missing.content == b""
    freshdesk.modes.throttle(1, retry_after=60)
    limited = post_freshdesk(freshdesk, body)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "60"
    assert freshdesk.records() == []


# --- Salesforce --------------------------------------------------------------------------------

TASK = {
    "Subject": "MeetBit meeting canceled [dlv_01HZX4]",
    "Description": "MeetBit meeting Demo canceled (canceled) [dlv_01HZX4]",
    "WhatId": "0065g00000AbCdEAAA",
    "Status": "Completed",
}
CLIENT = {
    "grant_type": "client_credentials",
    "client_id": "salesforce-sandbox-client-id",
    "client_secret": "salesforce-sandbox-client-secret",
}


def sf_token(fake: VendorFake, form: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/services/oauth2/token", data=CLIENT if form is None else form, timeout=5
    )


def sf_auth(fake: VendorFake) -> dict[str, str]:
    return {"Authorization": f"Bearer {sf_token(fake).json()['access_token']}"}


def sf_query(fake: VendorFake, soql: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(
        f"{fake.base_url}/services/data/v62.0/query",
        params={"q": soql},
        headers=headers,
        timeout=TIMEOUT,
    )


def post_task(fake: VendorFake, body: Any, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/services/data/v62.0/sobjects/Task",
        json=body,
        headers=headers,
        timeout=TIMEOUT,
    )


def test_salesforce_issues_a_token_and_takes_a_task(salesforce: SalesforceFake) -> None:
    token = sf_token(salesforce)
    assert token.status_code == 200, token.text
    grant = token.json()
    assert grant["token_type"] == "Bearer" and grant["instance_url"] == salesforce.base_url
    assert grant["access_token"] and grant["issued_at"].isdigit() and grant["signature"]
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    created = post_task(salesforce, TASK, headers)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["success"] is True and answer["errors"] == []
    assert answer["id"].startswith("00T") and len(answer["id"]) == 18
    [task] = salesforce.records()
    assert {k: task[k] for k in TASK} == TASK
    # The marker look-up: Subject can be filtered, with the record.
    soql = (
        "SELECT Id, Subject FROM Task WHERE WhatId = '0065g00000AbCdEAAA' "
        "AND Subject LIKE '%[dlv_01HZX4]%' ORDER BY CreatedDate DESC LIMIT 1"
    )
    found = sf_query(salesforce, soql, headers)
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["totalSize"] == 1 and result["done"] is True
    assert result["records"][0]["Id"] == answer["id"]
    assert result["records"][0]["attributes"]["type"] == "Task"
    none = sf_query(salesforce, soql.replace("HZX4", "HZX9"), headers)
    assert none.json()["totalSize"] == 0
    # A look-up by record returns the Description for the client to search.
    by_record = sf_query(
        salesforce, "SELECT Id, Description FROM Task WHERE WhatId = '0065g00000AbCdEAAA'", headers
    )
    assert by_record.json()["records"][0]["Description"].endswith("[dlv_01HZX4]")


def test_salesforce_token_expiry_and_renewal(salesforce: SalesforceFake) -> None:
    headers = sf_auth(salesforce)
    salesforce.expire_tokens()
    expired = post_task(salesforce, TASK, headers)
    assert expired.status_code == 401
    assert expired.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert salesforce.records() == []
    assert post_task(salesforce, TASK, sf_auth(salesforce)).status_code == 201
    assert salesforce.tokens_issued == 2
    assert post_task(salesforce, TASK, {}).status_code == 401
    salesforce.token_ttl = 0.0
    assert post_task(salesforce, TASK, sf_auth(salesforce)).status_code == 401


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({**CLIENT, "grant_type": "password"}, "unsupported_grant_type"),
        ({**CLIENT, "client_id": "other"}, "invalid_client_id"),
        ({**CLIENT, "client_secret": "other"}, "invalid_client"),
    ],
)
def test_salesforce_token_endpoint_refusals(
    salesforce: SalesforceFake, form: dict[str, str], error: str
) -> None:
    response = sf_token(salesforce, form)
    assert response.status_code == 400
    assert response.json()["error"] == error and response.json()["error_description"]


def test_salesforce_token_endpoint_wants_a_form(salesforce: SalesforceFake) -> None:
    response = requests.post(
        f"{salesforce.base_url}/services/oauth2/token", json=CLIENT, timeout=TIMEOUT
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"Subject": None}, "REQUIRED_FIELD_MISSING"),
        ({"WhatId": ""}, "REQUIRED_FIELD_MISSING"),
        ({"Priority": "High"}, "INVALID_FIELD"),
        ({"Status": "Done"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"WhatId": "0035g00000AbCdEAAA"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({"WhatId": "006-not-an-id"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({"Subject": "x" * 256}, "STRING_TOO_LONG"),
        ({"Status": 1}, "JSON_PARSER_ERROR"),
    ],
)
def test_salesforce_refuses_each_malformed_task(
    salesforce: SalesforceFake, change: dict[str, Any], code: str
) -> None:
    body = {**TASK, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = post_task(salesforce, body, sf_auth(salesforce))
    assert response.status_code == 400, response.text
    [error] = response.json()
    assert error["errorCode"] == code and error["message"]
    assert salesforce.records() == []


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Task WHERE Description LIKE '%dlv%'", "INVALID_FIELD"),
        ("SELECT Id, Foo FROM Task", "INVALID_FIELD"),
        ("SELECT Id FROM Opportunity", "INVALID_TYPE"),
        ("SELECT Id FROM Task WHERE WhatId IN ('006')", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE Subject LIKE '%x%' OR Status = 'Completed'", "MALFORMED_QUERY"),
        ("DELETE FROM Task", "MALFORMED_QUERY"),
        ("", "MALFORMED_QUERY"),
    ],
)
def test_salesforce_query_refuses_what_it_does_not_parse(
    salesforce: SalesforceFake, soql: str, code: str
) -> None:
    response = sf_query(salesforce, soql, sf_auth(salesforce))
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_salesforce_missing_record_and_request_limit(salesforce: SalesforceFake) -> None:
    headers = sf_auth(salesforce)
    salesforce.missing_ids.add(TASK["WhatId"])
    missing = post_task(salesforce, TASK, headers)
    assert missing.status_code == 404
    assert missing.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    salesforce.missing_ids.clear()
    salesforce.modes.throttle(1, retry_after=5)
    limited = post_task(salesforce, TASK, headers)
    assert limited.status_code == 403
    assert limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert post_task(salesforce, TASK, headers).status_code == 201
    wrong_version = requests.post(
        f"{salesforce.base_url}/services/data/v58.0/sobjects/Task", json=TASK, headers=headers,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert wrong_version.status_code == 404
    assert wrong_version.json()[0]["errorCode"] == "NOT_FOUND"


# --- Standard Webhooks receiver ----------------------------------------------------------------


def signed(
    fake: WebhookReceiver,
    body: bytes = b'{"outcome":"canceled","delivery_id":"dlv_01HZX4"}',
    *,
    webhook_id: str = "wb_01HZX4",
    timestamp: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard_webhook(secret or fake.secret, webhook_id, stamp, body),
    }


BODY = b'{"outcome":"canceled","delivery_id":"dlv_01HZX4"}'


def test_the_receiver_verifies_and_records_a_signed_webhook(receiver: WebhookReceiver) -> None:
    response = requests.post(
        receiver.base_url or "", data=BODY, headers=signed(receiver), timeout=5
    )
    assert response.status_code == 200 and response.json() == {"received": True}
    [record] = receiver.records()
    assert record["webhook_id"] == "wb_01HZX4" and record["duplicate"] is False
    assert record["payload"] == {"outcome": "canceled", "delivery_id": "dlv_01HZX4"}
    # Several signatures (a secret being rotated): one that matches is enough.
    headers = signed(receiver, webhook_id="wb_2")
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"]
    assert requests.post(receiver.base_url or "", data=BODY, headers=headers, timeout=5).ok
    # The same id again is accepted and marked.
    again = requests.post(receiver.base_url or "", data=BODY, headers=signed(receiver), timeout=5)
    assert again.status_code == 200 and receiver.records()[-1]["duplicate"] is True


def test_the_receiver_refuses_bad_signatures(receiver: WebhookReceiver) -> None:
    other = "whsec_" + base64.b64encode(b"another key").decode()
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (signed(receiver, secret=other), BODY, 401, "signature_mismatch"),
        (signed(receiver), BODY + b" ", 401, "signature_mismatch"),
        (signed(receiver, timestamp=int(time.time()) - 360), BODY, 400, "stale_timestamp"),
        (signed(receiver, timestamp=int(time.time()) + 360), BODY, 400, "stale_timestamp"),
        ({k: v for k, v in signed(receiver).items() if k != "webhook-id"}, BODY, 400,
         "missing_header"),
        ({**signed(receiver), "webhook-signature": "v2,abc"}, BODY, 401, "signature_mismatch"),
    ]  # fmt: skip
    for headers, body, status, reason in cases:
        response = requests.post(receiver.base_url or "", data=body, headers=headers, timeout=5)
        assert response.status_code == status, reason
        assert response.json()["error"] == reason
    not_json = b"outcome=canceled"
    headers = {**signed(receiver, body=not_json), "Content-Type": "text/plain"}
    assert (
        requests.post(
            receiver.base_url or "", data=not_json, headers=headers, timeout=5
        ).status_code
        == 415
    )
    assert receiver.records() == []


def test_every_fake_is_mounted_in_the_sandbox(sandbox: SandboxServer) -> None:
    assert sorted(sandbox.vendors) == [
        "freshdesk", "hubspot", "pipedrive", "salesforce", "webhook", "zendesk",
    ]  # fmt: skip
    for name, fake in sandbox.vendors.items():
        assert fake.base_url == f"{sandbox.url}/{name}"
    zendesk = sandbox.vendors["zendesk"]
    assert put_ticket(zendesk).status_code == 200
    receiver = sandbox.vendors["webhook"]
    assert isinstance(receiver, WebhookReceiver)
    # The receiver's own URL is the prefix itself, without a redirect.
    posted = requests.post(
        f"{sandbox.url}/webhook", data=BODY, headers=signed(receiver), timeout=TIMEOUT,
        allow_redirects=False,
    )  # fmt: skip
    assert posted.status_code == 200
    salesforce = sandbox.vendors["salesforce"]
    assert post_task(salesforce, TASK, sf_auth(salesforce)).status_code == 201
    assert sf_token(salesforce).json()["instance_url"] == f"{sandbox.url}/salesforce"


def test_settings_change_over_http_for_a_fake_in_another_process(sandbox: SandboxServer) -> None:
    hubspot, salesforce = sandbox.vendors["hubspot"], sandbox.vendors["salesforce"]

    def configure(fake: VendorFake, settings: Any) -> requests.Response:
        return requests.post(f"{fake.base_url}/_fake/config", json=settings, timeout=TIMEOUT)

    assert configure(hubspot, {"missing_ids": ["9876543210"], "search_lag": 60}).status_code == 200
    assert post_note(hubspot).status_code == 400  # the deal is missing now
    assert configure(hubspot, {"missing_ids": []}).status_code == 200
    assert post_note(hubspot).status_code == 201
    assert search_notes(hubspot, marker_search("[dlv_01HZX4]")).json()["total"] == 0  # lag
    assert configure(hubspot, {"rate_limit": [1, 60], "knobs": {"latency": 0}}).status_code == 200
    assert post_note(hubspot).status_code == 201
    assert post_note(hubspot).status_code == 429
    # A bad setting changes nothing, not even the good ones beside it.
    bad = configure(hubspot, {"rate_limit": None, "search_lag": -1})
    assert bad.status_code == 400 and "search_lag" in bad.json()["error"]
    assert post_note(hubspot).status_code == 429
    for settings in ({"nope": 1}, {"knobs": {"colour": 1}}, {"missing_ids": "1"}, ["x"]):
        assert configure(hubspot, settings).status_code == 400
    headers = sf_auth(salesforce)
    assert configure(salesforce, {"expire_tokens": True}).status_code == 200
    assert post_task(salesforce, TASK, headers).status_code == 401
    assert configure(salesforce, {"token_ttl": 0}).status_code == 200
    assert post_task(salesforce, TASK, sf_auth(salesforce)).status_code == 401
