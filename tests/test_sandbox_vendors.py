"""The vendor fakes accept what each vendor documents, refuse everything else in the vendor's own
error shape, find the delivery marker on look-ups, and misbehave on demand (429, slow, 5xx, a
write whose answer is lost). Every call is a real HTTP request with `requests`."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from bridge.sandbox import SandboxServer
from bridge.sandbox.vendors import HubSpotFake, VendorFake
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


def test_hubspot_counts_100_requests_per_10_seconds_strictly(hubspot: HubSpotFake) -> None:
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
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert len(hubspot.records()) == 100
    assert hubspot.max_in_window(10.0) == 100
    assert hubspot.refused()[0].reason == "rate_limited"


def test_hubspot_search_has_its_own_limit_of_five_per_second(hubspot: HubSpotFake) -> None:
    answers = [search_notes(hubspot, {}) for _ in range(6)]
    statuses = [a.status_code for a in answers]
    # Six searches in well under a second on loopback: the sixth is refused.
    assert statuses[:5] == [200] * 5 and statuses[5] == 429, statuses
    assert answers[5].json()["policyName"] == "SECONDLY"


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
