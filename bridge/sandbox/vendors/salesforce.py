"""Salesforce as the `salesforce-task` write-back uses it: an OAuth 2.0 client-credentials token,
a Task on the record, and a SOQL query on Task (the marker look-up).

- `POST /services/oauth2/token`, form-encoded `grant_type=client_credentials`, `client_id`,
  `client_secret` (or the pair as HTTP Basic), 200 `{access_token, signature, scope,
  instance_url, id, token_type: "Bearer", issued_at}`; errors `{"error", "error_description"}`
  (`unsupported_grant_type`, `invalid_client_id`, `invalid_client`);
  https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm
- `POST /services/data/v62.0/sobjects/Task` `{"Subject", "Description", "WhatId", "Status"}`
  with `Authorization: Bearer <access_token>`, 201 `{"id", "success": true, "errors": []}`;
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm
- `GET /services/data/v62.0/query?q=SELECT f, … FROM Task WHERE c [AND c …] [ORDER BY
  CreatedDate ASC|DESC] [LIMIT n]`, a condition being `Field = '…'` or `Field LIKE '…'` on
  Id, Subject, WhatId or Status; 200 `{totalSize, done: true, records}`. As in Salesforce,
  `Description` (a long text area) cannot be filtered: `INVALID_FIELD`; any other query shape
  is refused with `MALFORMED_QUERY` naming what the fake parses.

Errors are Salesforce's list `[{"message", "errorCode", "fields"?}]`: 401 `INVALID_SESSION_ID`
for an unknown, expired or revoked token (`expire_tokens()`, or `token_ttl` seconds), 400
`REQUIRED_FIELD_MISSING`, `INVALID_FIELD`, `FIELD_INTEGRITY_EXCEPTION` (a WhatId that is not
an Account 001, Opportunity 006 or Case 500 id), `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`,
`JSON_PARSER_ERROR`; 404 `INVALID_CROSS_REFERENCE_KEY` for a record in `missing_ids`.
Throttled: Salesforce answers an exhausted API allocation with 403 `REQUEST_LIMIT_EXCEEDED`
(https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html),
not 429; the fake does the same, with a `Retry-After` it would not send.

Stricter than Salesforce where the bridge's contract is: all four fields are required.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Request, Response

from bridge.sandbox.vendors.base import (
    Endpoint,
    Received,
    Refused,
    Reply,
    VendorFake,
    basic_credentials,
    bearer_token,
    iso_now,
    json_answer,
    same_secret,
)

__all__ = ["API_VERSION", "SalesforceFake"]

API_VERSION = "v62.0"
_DATA = f"/services/data/{API_VERSION}"
_ORG_ID = "00D5g00000SANDBOX"
_USER_ID = "0055g00000SANDBOX"
_FIELDS = ("Id", "Subject", "Description", "WhatId", "Status", "CreatedDate")
_WRITABLE = ("Subject", "Description", "WhatId", "Status")
_FILTERABLE = ("Id", "Subject", "WhatId", "Status")
_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
_WHAT_PREFIXES = {"001": "Account", "006": "Opportunity", "500": "Case"}
_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_SUBJECT_MAX, _DESCRIPTION_MAX = 255, 32_000
_STRING = r"'(?:[^'\\]|\\.)*'"
_CONDITION = re.compile(rf"^(\w+)\s*(=|LIKE)\s*({_STRING})$", re.IGNORECASE)
_QUERY = re.compile(
    r"^SELECT\s+(?P<fields>[\w\s,]+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<direction>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_PARSES = (
    "the sandbox fake parses only SELECT <fields> FROM Task [WHERE <Field> = '…' | <Field> "
    "LIKE '…' [AND …]] [ORDER BY CreatedDate [ASC|DESC]] [LIMIT n]"
)


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _like(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE: `%` any run, `_` one character, case-insensitive."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


class SalesforceFake(VendorFake):
    """Salesforce Tasks behind a client-credentials token; see the module docstring."""

    name = "salesforce"
    endpoints = (
        Endpoint("/services/oauth2/token", "POST", "token"),
        Endpoint(f"{_DATA}/sobjects/Task", "POST", "create_task", writes=True),
        Endpoint(f"{_DATA}/query", "GET", "query"),
    )

    def __init__(
        self,
        *,
        client_id: str = "salesforce-sandbox-client-id",
        client_secret: str = "salesforce-sandbox-client-secret",
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(rate_limit=rate_limit)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl: float | None = None
        self._tokens: dict[str, float] = {}  # access token → issued at

    def forget(self) -> None:
        with self._lock:
            self._tokens = {}
        self.token_ttl = None

    def credentials_hint(self) -> str:
        return f"client credentials {self.client_id} / {self.client_secret}"

    def configure_extra(self, key: str, value: Any) -> Callable[[], None] | None:
        if key == "expire_tokens":
            if value is not True:
                raise ValueError("expire_tokens: true")
            return self.expire_tokens
        if key == "token_ttl":
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise ValueError("token_ttl: seconds >= 0, or null")
            return functools.partial(setattr, self, "token_ttl", value)
        return None

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired: the next API call gets 401."""
        with self._lock:
            self._tokens = {}

    @property
    def tokens_issued(self) -> int:
        return sum(1 for r in self.accepted() if r.path.endswith("/services/oauth2/token"))

    # -- Salesforce's words -------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        codes = {
            "not_found": "NOT_FOUND",
            "method_not_allowed": "METHOD_NOT_ALLOWED",
            "unsupported_media_type": "UNSUPPORTED_MEDIA_TYPE",
            "invalid_json": "JSON_PARSER_ERROR",
            "server_error": "UNKNOWN_EXCEPTION",
            "too_large": "REQUEST_ENTITY_TOO_LARGE",
        }
        entry: dict[str, Any] = {"message": message, "errorCode": codes.get(code, code)}
        entry.update(extra)
        if status == 404 and code == "not_found":
            entry["message"] = "The requested resource does not exist"
        return json_answer(status, [entry])

    def throttled(self, retry_after: int, why: str) -> Response:
        response = self.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def _oauth_error(self, error: str, description: str, reason: str) -> Refused:
        return Refused(json_answer(400, {"error": error, "error_description": description}), reason)

    def authenticate(self, req: Request) -> None:
        if req.path.endswith("/services/oauth2/token"):
            return  # the token endpoint checks the client itself
        token = bearer_token(req)
        with self._lock:
            issued = self._tokens.get(token or "")
        expired = issued is not None and self.token_ttl is not None
        if issued is None or (expired and time.time() - issued > (self.token_ttl or 0)):
            raise self.refuse(401, "INVALID_SESSION_ID", "Session expired or invalid", "session")

    # -- token --------------------------------------------------------------------------------

    def token(self, req: Request, received: Received) -> Reply:
        if req.mimetype != "application/x-www-form-urlencoded":
            raise self._oauth_error(
                "invalid_request", "must use Content-Type application/x-www-form-urlencoded",
                "content_type",
            )  # fmt: skip
        form = req.form
        if form.get("grant_type") != "client_credentials":
            raise self._oauth_error(
                "unsupported_grant_type", "grant type not supported", "grant_type"
            )
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = basic_credentials(req)
        if basic is not None and not client_id:
            client_id, client_secret = basic
        if not same_secret(client_id, self.client_id):
            raise self._oauth_error("invalid_client_id", "client identifier invalid", "client_id")
        if not same_secret(client_secret, self.client_secret):
            raise self._oauth_error("invalid_client", "invalid client credentials", "secret")
        access = f"{_ORG_ID}!{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            self._tokens[access] = now
        origin = self.base_url or req.host_url.rstrip("/")
        return Reply(
            200,
            {
                "access_token": access,
                "signature": secrets.token_urlsafe(32),
                "scope": "api",
                "instance_url": origin,
                "id": f"https://login.salesforce.com/id/{_ORG_ID}/{_USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(now * 1000)),
                "api_instance_url": origin,
            },
        )

    # -- create -------------------------------------------------------------------------------

    def _field_error(self, code: str, message: str, field: str, reason: str) -> Refused:
        return self.refuse(400, code, message, reason, fields=[field])

    def create_task(self, req: Request, received: Received) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict):
            raise self.refuse(
                400, "JSON_PARSER_ERROR", "Cannot deserialize instance of Task from a non-object",
                "not_an_object",
            )  # fmt: skip
        for name in body:
            if name not in _WRITABLE:
                raise self.refuse(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Task",
                    "unknown_field",
                )  # fmt: skip
        missing = [f for f in _WRITABLE if f not in body or body[f] in (None, "")]
        if missing:
            message = f"Required fields are missing: [{', '.join(missing)}]"
            raise self.refuse(
                400, "REQUIRED_FIELD_MISSING", message, "missing_field", fields=missing
            )
        for name in _WRITABLE:
            if not isinstance(body[name], str):
                raise self._field_error(
                    "JSON_PARSER_ERROR", f"Cannot deserialize value of {name}: not a string",
                    name, "field_type",
                )  # fmt: skip
        if len(body["Subject"]) > _SUBJECT_MAX:
            raise self._field_error(
                "STRING_TOO_LONG", f"Subject: data value too large (max length={_SUBJECT_MAX})",
                "Subject", "subject_too_long",
            )  # fmt: skip
        if len(body["Description"]) > _DESCRIPTION_MAX:
            raise self._field_error(
                "STRING_TOO_LONG",
                f"Comments: data value too large (max length={_DESCRIPTION_MAX})",
                "Description", "description_too_long",
            )  # fmt: skip
        if body["Status"] not in _STATUSES:
            raise self._field_error(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"Status: bad value for restricted picklist field: {body['Status']}",
                "Status", "status",
            )  # fmt: skip
        what = body["WhatId"]
        if not _ID.match(what) or what[:3] not in _WHAT_PREFIXES:
            raise self._field_error(
                "FIELD_INTEGRITY_EXCEPTION", f"Related To ID: id value of incorrect type: {what}",
                "WhatId", "what_id",
            )  # fmt: skip
        if what in self.missing_ids:
            raise self.refuse(
                404, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", "what_missing"
            )
        task_id = f"00T5g00000{self.new_id():05d}AAA"
        task = {
            "Id": task_id,
            "Subject": body["Subject"],
            "Description": body["Description"],
            "WhatId": what,
            "Status": body["Status"],
            "CreatedDate": iso_now().replace("Z", "+0000"),
        }
        self.store(task)
        return Reply(
            201, {"id": task_id, "success": True, "errors": []}, created=task, created_id=task_id
        )

    # -- query --------------------------------------------------------------------------------

    def _malformed(self, message: str, reason: str = "malformed_query") -> Refused:
        return self.refuse(400, "MALFORMED_QUERY", message, reason)

    def query(self, req: Request, received: Received) -> Reply:
        q = req.args.get("q", "")
        match = _QUERY.match(q.strip())
        if not q or match is None:
            raise self._malformed(f"unexpected query: {q!r}; {_PARSES}")
        if match["object"].lower() != "task":
            raise self.refuse(
                400, "INVALID_TYPE", f"sObject type '{match['object']}' is not supported "
                "(the sandbox fake holds Task only)", "query_object",
            )  # fmt: skip
        fields = [f.strip() for f in match["fields"].split(",")]
        for name in fields:
            if _canonical(name) is None:
                raise self.refuse(
                    400, "INVALID_FIELD", f"No such column '{name}' on entity 'Task'",
                    "query_field",
                )  # fmt: skip
        checks = self._conditions(match["where"]) if match["where"] else []
        if match["order"] and _canonical(match["order"]) != "CreatedDate":
            raise self._malformed(f"ORDER BY {match['order']}: {_PARSES}")
        found = self.stored(lambda t: all(check(t) for check in checks))
        if (match["direction"] or "ASC").upper() == "DESC":
            found = list(reversed(found))
        if match["limit"]:
            found = found[: int(match["limit"])]
        records = [
            {
                "attributes": {"type": "Task", "url": f"{_DATA}/sobjects/Task/{t['Id']}"},
                **{_canonical(n) or n: t[_canonical(n) or n] for n in fields},
            }
            for t in found
        ]
        return Reply(200, {"totalSize": len(records), "done": True, "records": records})

    def _conditions(self, where: str) -> list[Any]:
        checks = []
        for part in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE):
            condition = _CONDITION.match(part.strip())
            if condition is None:
                raise self._malformed(f"unexpected condition {part!r}; {_PARSES}")
            field, operator, literal = condition.groups()
            name = _canonical(field)
            if name is None:
                raise self.refuse(
                    400, "INVALID_FIELD", f"No such column '{field}' on entity 'Task'",
                    "query_field",
                )  # fmt: skip
            if name not in _FILTERABLE:
                raise self.refuse(
                    400, "INVALID_FIELD", f"field '{name}' can not be filtered in query call",
                    "query_unfilterable",
                )  # fmt: skip
            value = _unquote(literal)
            if operator.upper() == "LIKE":
                pattern = _like(value)
                checks.append(lambda t, n=name, p=pattern: bool(p.match(t[n])))
            else:
                checks.append(lambda t, n=name, v=value: t[n] == v)
        return checks


def _canonical(name: str) -> str | None:
    """SOQL field names are case-insensitive."""
    for field in _FIELDS:
        if field.lower() == name.lower():
            return field
    return None
