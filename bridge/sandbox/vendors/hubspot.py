"""HubSpot's notes API as the `hubspot-note` write-back uses it: create a note associated with a
deal, ticket, contact or company, and search notes (the marker look-up).

- `POST /crm/v3/objects/notes` `{"properties": {"hs_note_body", "hs_timestamp"}, "associations":
  [{"to": {"id"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId"}]}]}`
  (note→deal 214, →ticket 228, →contact 202, →company 190), 201 with the note;
  https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide
- `POST /crm/v3/objects/notes/search` (`filterGroups` of `filters` with `EQ`, `IN`,
  `HAS_PROPERTY`, `CONTAINS_TOKEN`, `NOT_CONTAINS_TOKEN`; `associations.deal` etc. as property
  names), 200 `{total, results, paging}`; limited to 5 requests per second of its own;
  https://developers.hubspot.com/docs/api-reference/search/guide
- `GET /crm/v3/objects/notes/{id}`.

`Authorization: Bearer <private app token>`; errors in HubSpot's envelope `{status: "error",
message, correlationId, category}` (https://developers.hubspot.com/docs/api-reference/error-handling);
100 requests per rolling 10 s by default (a private app's burst limit), refused with 429
`RATE_LIMIT`/`TEN_SECONDLY_ROLLING`, `Retry-After` and the `X-HubSpot-RateLimit-*` headers.

Stricter than HubSpot where the bridge's contract is: `hs_note_body` and at least one
association are required, and only the four HUBSPOT_DEFINED note association types are known.
`search_lag` (seconds, default 0) hides notes younger than that from search, as HubSpot's
index does for a few seconds after a write.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from flask import Request, Response

from bridge.sandbox.vendors.base import (
    Endpoint,
    Received,
    Refused,
    Reply,
    VendorFake,
    correlation_id,
    iso_now,
    json_answer,
    same_secret,
)

__all__ = ["ASSOCIATION_TYPES", "HubSpotFake"]

# HUBSPOT_DEFINED association type ids, note → object.
ASSOCIATION_TYPES = {214: "deal", 228: "ticket", 202: "contact", 190: "company"}
_PLURAL = {"deal": "deals", "ticket": "tickets", "contact": "contacts", "company": "companies"}
_CATEGORIES = ("HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED")
_PROPERTIES = ("hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids")
_READ_ONLY = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id", "hs_body_preview")
_BODY_MAX = 65_536
_OPERATORS = (
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
    "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
)  # fmt: skip
_FAKE_OPERATORS = ("EQ", "IN", "HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN")
_MAX_GROUPS, _MAX_FILTERS_PER_GROUP, _MAX_FILTERS = 5, 6, 18
_SEARCH_MAX_LIMIT = 200
_DEFAULT_SEARCH_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
_NO_AUTH = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_MISSING_SCOPES = (
    "This app hasn't been granted all required scopes to make this call. Read more about "
    "required scopes here: https://developers.hubspot.com/scopes."
)
_FIRST_NOTE_ID = 60_000_000_000
_TOKEN = re.compile(r"[\w*]+")


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def contains_token(text: str, value: str) -> bool:
    """HubSpot's CONTAINS_TOKEN: the value's words appear, in order, among the text's words;
    `*` completes a partial word."""
    words, wanted = _tokens(text), _tokens(value)
    if not wanted:
        return False
    for start in range(len(words) - len(wanted) + 1):
        if all(fnmatchcase(words[start + i], w) for i, w in enumerate(wanted)):
            return True
    return False


def _parse_timestamp(value: str) -> str | None:
    """`hs_timestamp`: Unix milliseconds or a UTC ISO 8601 datetime; the stored ISO form."""
    if value.isdigit():
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.utcoffset() is None:
            return None
    return iso_now(moment.timestamp())


class HubSpotFake(VendorFake):
    """HubSpot's notes API; see the module docstring. `token` is the private app token it
    accepts; `denied_token` is a valid token whose app lacks the scope (403 MISSING_SCOPES)."""

    name = "hubspot"
    endpoints = (
        Endpoint("/crm/v3/objects/notes", "POST", "create_note", writes=True),
        Endpoint("/crm/v3/objects/notes/search", "POST", "search_notes", window=(5, 1.0)),
        Endpoint("/crm/v3/objects/notes/<note_id>", "GET", "get_note"),
    )

    def __init__(
        self,
        *,
        token: str = "pat-na1-sandbox-hubspot",
        denied_token: str = "pat-na1-sandbox-noscope",
        rate_limit: tuple[int, float] | None = (100, 10.0),
    ) -> None:
        super().__init__(rate_limit=rate_limit)
        self.token = token
        self.denied_token = denied_token
        self.search_lag = 0.0

    def forget(self) -> None:
        self.search_lag = 0.0

    def credentials_hint(self) -> str:
        return f"Authorization: Bearer {self.token}"

    def configure_extra(self, key: str, value: Any) -> Callable[[], None] | None:
        if key != "search_lag":
            return None
        if not isinstance(value, int | float) or value < 0:
            raise ValueError("search_lag: seconds >= 0")
        return functools.partial(setattr, self, "search_lag", float(value))

    # -- HubSpot's words ----------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        category = {
            "invalid_json": "VALIDATION_ERROR",
            "unsupported_media_type": "VALIDATION_ERROR",
            "not_found": "OBJECT_NOT_FOUND",
            "method_not_allowed": "VALIDATION_ERROR",
            "too_large": "VALIDATION_ERROR",
            "server_error": "INTERNAL_ERROR",
        }.get(code, code)
        body: dict[str, Any] = {
            "status": "error",
            "message": message,
            "correlationId": correlation_id(),
            "category": category,
        }
        body.update(extra)
        return json_answer(status, body)

    def throttled(self, retry_after: int, why: str) -> Response:
        search = why == "endpoint"
        policy = "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
        body = {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(),
            "policyName": policy,
            "groupName": "publicapi:private-app:sandbox",
        }
        headers = {"Retry-After": str(retry_after)}
        if not search and self._window is not None:
            headers.update(self.rate_headers(self._window.limit, self._window.window, 0))
        return json_answer(429, body, headers)

    def rate_headers(self, limit: int, window: float, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(window * 1000)),
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
        }

    def authenticate(self, req: Request) -> None:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise self.refuse(401, "INVALID_AUTHENTICATION", _NO_AUTH, "missing_auth")
        if same_secret(token, self.denied_token):
            raise self.refuse(
                403, "MISSING_SCOPES", _MISSING_SCOPES, "missing_scopes",
                errors=[{
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]},
                }],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            )  # fmt: skip
        if not same_secret(token, self.token):
            raise self.refuse(401, "INVALID_AUTHENTICATION", _NO_AUTH, "wrong_token")

    def _invalid(self, message: str, reason: str, **context: Any) -> Refused:
        errors = [{"message": message, "context": context}] if context else []
        extra: dict[str, Any] = {"errors": errors} if errors else {}
        return self.refuse(400, "VALIDATION_ERROR", message, reason, **extra)

    # -- create -------------------------------------------------------------------------------

    def create_note(self, req: Request, received: Received) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict):
            raise self._invalid("Invalid input JSON: expected an object", "not_an_object")
        unknown = sorted(set(body) - {"properties", "associations", "objectWriteTraceId"})
        if unknown:
            raise self._invalid(
                f"Invalid input JSON: Unrecognized field {unknown[0]!r}", "unknown_field"
            )
        properties = self._note_properties(body.get("properties"))
        associations = self._associations(body.get("associations"))
        now = time.time()
        note_id = str(_FIRST_NOTE_ID + self.new_id())
        stamp = iso_now(now)
        properties.update(
            hs_createdate=stamp,
            hs_lastmodifieddate=stamp,
            hs_object_id=note_id,
            hs_body_preview=properties["hs_note_body"][:100],
        )
        note = {
            "id": note_id,
            "properties": dict(sorted(properties.items())),
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
            "associations": associations,
            "_created": now,
        }
        self.store(note)
        return Reply(201, _public(note, with_associations=False), created=note, created_id=note_id)

    def _note_properties(self, properties: Any) -> dict[str, str]:
        if not isinstance(properties, dict):
            raise self._invalid("properties: required, an object", "properties")
        for name, value in properties.items():
            if name in _READ_ONLY or name not in _PROPERTIES:
                problem = json.dumps([{
                    "isValid": False, "message": f'Property "{name}" does not exist',
                    "error": "PROPERTY_DOESNT_EXIST", "name": name,
                }])  # fmt: skip
                raise self._invalid(
                    f"Property values were not valid: {problem}",
                    "unknown_property", propertyName=[name],
                )  # fmt: skip
            if not isinstance(value, str):
                raise self._invalid(
                    f"Property values were not valid: {name} must be a string",
                    "property_type", propertyName=[name],
                )  # fmt: skip
        for required in ("hs_timestamp", "hs_note_body"):
            if not properties.get(required, "").strip():
                raise self._invalid(
                    f"Property values were not valid: {required} is required",
                    f"missing_{required}", propertyName=[required],
                )  # fmt: skip
        stamp = _parse_timestamp(properties["hs_timestamp"])
        if stamp is None:
            raise self._invalid(
                "Property values were not valid: hs_timestamp must be Unix milliseconds or a "
                "UTC ISO 8601 datetime", "bad_timestamp", propertyName=["hs_timestamp"],
            )  # fmt: skip
        if len(properties["hs_note_body"]) > _BODY_MAX:
            raise self._invalid(
                f"Property values were not valid: hs_note_body is longer than {_BODY_MAX} "
                "characters", "body_too_long", propertyName=["hs_note_body"],
            )  # fmt: skip
        return {**properties, "hs_timestamp": stamp}

    def _associations(self, associations: Any) -> dict[str, Any]:
        if not isinstance(associations, list) or not associations:
            raise self._invalid(
                "associations: the note must be associated with its record", "no_association"
            )
        linked: dict[str, Any] = {}
        for i, item in enumerate(associations):
            where = f"associations[{i}]"
            if not isinstance(item, dict) or set(item) != {"to", "types"}:
                raise self._invalid(
                    f"{where}: an object with exactly 'to' and 'types'", "association_shape"
                )
            to = item["to"]
            if not isinstance(to, dict) or set(to) != {"id"}:
                raise self._invalid(f"{where}.to: an object with 'id'", "association_to")
            record = to["id"]
            if not isinstance(record, str) or not record.isdigit():
                raise self._invalid(
                    f"{where}.to.id: a string of digits, got {record!r}", "association_id"
                )
            types = item["types"]
            if not isinstance(types, list) or len(types) != 1 or not isinstance(types[0], dict):
                raise self._invalid(
                    f"{where}.types: a list of one association type", "association_types"
                )
            kind = types[0]
            if set(kind) != {"associationCategory", "associationTypeId"}:
                raise self._invalid(
                    f"{where}.types[0]: associationCategory and associationTypeId",
                    "association_type_shape",
                )
            category, type_id = kind["associationCategory"], kind["associationTypeId"]
            if category not in _CATEGORIES:
                raise self._invalid(
                    f"{where}.types[0].associationCategory: one of {', '.join(_CATEGORIES)}",
                    "association_category",
                )
            if not isinstance(type_id, int) or isinstance(type_id, bool):
                raise self._invalid(
                    f"{where}.types[0].associationTypeId: an integer", "association_type_id"
                )
            if category != "HUBSPOT_DEFINED" or type_id not in ASSOCIATION_TYPES:
                raise self._invalid(
                    f"{where}: {category} association type {type_id} is not a note association "
                    "(HUBSPOT_DEFINED 214 deal, 228 ticket, 202 contact, 190 company)",
                    "association_type_unknown",
                )  # fmt: skip
            obj = ASSOCIATION_TYPES[type_id]
            if record in self.missing_ids:
                raise self._invalid(
                    f"One or more associations are invalid: {obj} {record} does not exist",
                    "association_missing", objectType=obj, id=record,
                )  # fmt: skip
            results = linked.setdefault(_PLURAL[obj], {"results": []})["results"]
            results.append({"id": record, "type": f"note_to_{obj}"})
        return linked

    # -- read ---------------------------------------------------------------------------------

    def get_note(self, req: Request, received: Received, note_id: str) -> Reply:
        notes = self.stored(lambda n: n["id"] == note_id)
        if not notes:
            raise self.refuse(
                404,
                "OBJECT_NOT_FOUND",
                "Object not found.  objectId are usually numeric.",
                "note_not_found",
            )
        return Reply(200, _public(notes[0], with_associations=True))

    def search_notes(self, req: Request, received: Received) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict):
            raise self._invalid("Invalid input JSON: expected an object", "not_an_object")
        if "query" in body:
            raise self._invalid(
                "query (full-text search) is valid at HubSpot but the sandbox fake does not "
                "implement it: use filterGroups", "search_query_unsupported",
            )  # fmt: skip
        unknown = sorted(set(body) - {"filterGroups", "properties", "limit", "after", "sorts"})
        if unknown:
            raise self._invalid(
                f"Invalid input JSON: Unrecognized field {unknown[0]!r}", "unknown_field"
            )
        groups = body.get("filterGroups", [])
        if not isinstance(groups, list) or len(groups) > _MAX_GROUPS:
            raise self._invalid(f"filterGroups: a list of at most {_MAX_GROUPS}", "filter_groups")
        checks = [self._group(i, g) for i, g in enumerate(groups)]
        if sum(len(c) for c in checks) > _MAX_FILTERS:
            raise self._invalid(f"at most {_MAX_FILTERS} filters in all", "too_many_filters")
        wanted = body.get("properties", list(_DEFAULT_SEARCH_PROPERTIES))
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise self._invalid("properties: a list of property names", "search_properties")
        limit = body.get("limit", 10)
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= _SEARCH_MAX_LIMIT
        ):
            raise self._invalid(f"limit: an integer from 1 to {_SEARCH_MAX_LIMIT}", "search_limit")
        after = body.get("after", "0")
        if not isinstance(after, str) or not after.isdigit():
            raise self._invalid(
                "after: the paging cursor string of the previous page", "search_after"
            )
        horizon = time.time() - self.search_lag
        found = [
            n
            for n in self.stored(lambda n: n["_created"] <= horizon)
            if not checks or any(all(check(n) for check in group) for group in checks)
        ]
        start = int(after)
        page = found[start : start + limit]
        answer: dict[str, Any] = {
            "total": len(found),
            "results": [_searched(n, wanted) for n in page],
        }
        if start + limit < len(found):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return Reply(200, answer)

    def _group(self, i: int, group: Any) -> list[Any]:
        if (
            not isinstance(group, dict)
            or set(group) != {"filters"}
            or not isinstance(group["filters"], list)
        ):
            raise self._invalid(
                f"filterGroups[{i}]: an object with a 'filters' list", "filter_group"
            )
        filters = group["filters"]
        if len(filters) > _MAX_FILTERS_PER_GROUP:
            raise self._invalid(
                f"filterGroups[{i}]: at most {_MAX_FILTERS_PER_GROUP} filters", "too_many_filters"
            )
        return [self._filter(f"filterGroups[{i}].filters[{j}]", f) for j, f in enumerate(filters)]

    def _filter(self, where: str, spec: Any) -> Any:
        if not isinstance(spec, dict) or not isinstance(spec.get("propertyName"), str):
            raise self._invalid(
                f"{where}: an object with propertyName and operator", "filter_shape"
            )
        name, operator = spec["propertyName"], spec.get("operator")
        if operator not in _OPERATORS:
            raise self._invalid(
                f"{where}.operator: {operator!r} is not one of {', '.join(_OPERATORS)}",
                "filter_operator",
            )
        if operator not in _FAKE_OPERATORS:
            raise self._invalid(
                f"{where}.operator: {operator} is valid at HubSpot but the sandbox fake only "
                f"implements {', '.join(_FAKE_OPERATORS)}", "filter_operator_unsupported",
            )  # fmt: skip
        unknown = sorted(set(spec) - {"propertyName", "operator", "value", "values"})
        if unknown:
            raise self._invalid(f"{where}: unknown key {unknown[0]!r}", "filter_shape")
        association = name.startswith("associations.")
        if association and (name[13:] not in _PLURAL or operator not in ("EQ", "IN")):
            raise self._invalid(
                f"{where}: associations.deal|ticket|contact|company with EQ or IN",
                "filter_association",
            )
        if not association and name not in _PROPERTIES + _READ_ONLY:
            raise self._invalid(
                f"{where}.propertyName: no note property {name!r}", "filter_property"
            )
        if operator == "IN":
            values = spec.get("values")
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) for v in values)
            ):
                raise self._invalid(f"{where}.values: a list of strings for IN", "filter_values")
            wanted = set(values)
        elif operator != "HAS_PROPERTY":
            value = spec.get("value")
            if not isinstance(value, str) or not value:
                raise self._invalid(f"{where}.value: a non-empty string", "filter_value")
            wanted = {value}
        else:
            wanted = set()

        def check(note: dict[str, Any]) -> bool:
            if association:
                linked: list[dict[str, str]] = note["associations"].get(
                    _PLURAL[name[13:]], {"results": []}
                )["results"]
                return any(a["id"] in wanted for a in linked)
            text = note["properties"].get(name)
            if operator == "HAS_PROPERTY":
                return text is not None
            if text is None:
                return bool(operator == "NOT_CONTAINS_TOKEN")
            if operator in ("EQ", "IN"):
                return bool(text in wanted)
            hit = contains_token(str(text), next(iter(wanted)))
            return hit if operator == "CONTAINS_TOKEN" else not hit

        return check


def _public(note: dict[str, Any], *, with_associations: bool) -> dict[str, Any]:
    shown = {k: v for k, v in note.items() if not k.startswith("_") and k != "associations"}
    if with_associations:
        shown["associations"] = note["associations"]
    return shown


def _searched(note: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    properties = note["properties"]
    names = set(wanted) | set(_DEFAULT_SEARCH_PROPERTIES)
    shown = _public(note, with_associations=False)
    shown["properties"] = {n: properties.get(n) for n in sorted(names)}
    return shown
