"""Pipedrive's notes API (v1) as the `pipedrive-note` write-back uses it: add a note to a deal,
person or organization, and list the notes of one (the marker look-up).

- `POST /api/v1/notes` `{"content", "deal_id" | "person_id" | "org_id"}`, 201
  `{"success": true, "data": note}`; https://developers.pipedrive.com/docs/api/v1/Notes#addNote
- `GET /api/v1/notes?deal_id=` (or `person_id`, `org_id`; `start`, `limit` ≤ 500, `sort`),
  200 `{"success": true, "data": [...] | null, "additional_data": {"pagination": {start, limit,
  more_items_in_collection}}}` (`data` is null when there are none, as Pipedrive's v1 lists do);
  https://developers.pipedrive.com/docs/api/v1/Notes#getNotes

Auth: the API token in the `x-api-token` header (what the bridge sends; Pipedrive's docs:
https://pipedrive.readme.io/docs/core-api-concepts-authentication) or, as Pipedrive still
takes it, the `api_token` query parameter; 401 `{"success": false, "error": "unauthorized
access", "errorCode": 401, "error_info": …}`; `denied_token` gets 403. Every answer is
Pipedrive's envelope (https://pipedrive.readme.io/docs/core-api-concepts-responses); 429
`{"success": false, "error": "Rate limit exceeded", "errorCode": 429}` with `Retry-After` and
`x-ratelimit-*`.

Stricter than Pipedrive where the bridge's contract is: exactly one of `deal_id`, `person_id`,
`org_id` (an integer), `content` a non-empty string, no other field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Request, Response

from bridge.sandbox.vendors.base import (
    Endpoint,
    Received,
    Refused,
    Reply,
    VendorFake,
    json_answer,
    same_secret,
)

__all__ = ["PipedriveFake"]

_ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
_TARGETS = ("deal_id", "person_id", "org_id")
_LIST_MAX = 500
_USER_ID = 1_000_001


def _pipedrive_time() -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC, Pipedrive's v1 timestamps."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class PipedriveFake(VendorFake):
    """Pipedrive notes; see the module docstring. Deals, persons and organizations exist unless
    their id is in `missing_ids`."""

    name = "pipedrive"
    endpoints = (
        Endpoint("/api/v1/notes", "POST", "add_note", writes=True),
        Endpoint("/api/v1/notes", "GET", "list_notes"),
    )

    def __init__(
        self,
        *,
        api_token: str = "pipedrive-sandbox-api-token",
        denied_token: str = "pipedrive-sandbox-no-access",
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(rate_limit=rate_limit)
        self.api_token = api_token
        self.denied_token = denied_token

    def credentials_hint(self) -> str:
        return f"x-api-token: {self.api_token}"

    # -- Pipedrive's words --------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        body: dict[str, Any] = {
            "success": False,
            "error": message,
            "error_info": _ERROR_INFO,
            "data": None,
            "additional_data": None,
        }
        if status in (401, 429):
            body = {
                "success": False,
                "error": message,
                "errorCode": status,
                "error_info": _ERROR_INFO,
            }
        body.update(extra)
        return json_answer(status, body)

    def throttled(self, retry_after: int, why: str) -> Response:
        response = self.error(429, "rate_limited", "Rate limit exceeded")
        response.headers.update(
            {
                "Retry-After": str(retry_after),
                "x-ratelimit-limit": str(self._window.limit if self._window else 80),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(retry_after),
            }
        )
        return response

    def authenticate(self, req: Request) -> None:
        token = req.headers.get("x-api-token") or req.args.get("api_token", "")
        if not token:
            raise self.refuse(401, "", "unauthorized access", "missing_auth")
        if same_secret(token, self.denied_token):
            raise self.refuse(
                403, "", "You do not have permissions to perform this action", "forbidden"
            )
        if not same_secret(token, self.api_token):
            raise self.refuse(401, "", "unauthorized access", "wrong_token")

    def _bad(self, message: str, reason: str) -> Refused:
        return self.refuse(400, "", message, reason)

    # -- add ----------------------------------------------------------------------------------

    def add_note(self, req: Request, received: Received) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict):
            raise self._bad("Request body must be a JSON object", "not_an_object")
        unknown = sorted(set(body) - {"content", *_TARGETS})
        if unknown:
            raise self._bad(f"Unknown field: {unknown[0]}", "unknown_field")
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise self._bad("Content is required and must be a non-empty string", "content")
        targets = [t for t in _TARGETS if t in body]
        if len(targets) != 1:
            raise self._bad(
                "Exactly one of deal_id, person_id or org_id must be given", "target_count"
            )
        target = targets[0]
        record = body[target]
        if not isinstance(record, int) or isinstance(record, bool) or record < 1:
            raise self._bad(f"{target} must be a positive integer", "target_type")
        if str(record) in self.missing_ids:
            kind = {"deal_id": "Deal", "person_id": "Person", "org_id": "Organization"}[target]
            raise self.refuse(404, "", f"{kind} not found", "record_missing")
        now = _pipedrive_time()
        note: dict[str, Any] = {
            "id": self.new_id(),
            "user_id": _USER_ID,
            "deal_id": None,
            "person_id": None,
            "org_id": None,
            "lead_id": None,
            "content": content,
            "add_time": now,
            "update_time": now,
            "active_flag": True,
            "pinned_to_deal_flag": False,
            "pinned_to_person_flag": False,
            "pinned_to_organization_flag": False,
            "pinned_to_lead_flag": False,
            "last_update_user_id": None,
            "user": {"email": "api@sandbox.pipedrive.test", "name": "Sandbox API", "is_you": True},
        }
        note[target] = record
        self.store(note)
        return Reply(201, {"success": True, "data": note}, created=note, created_id=str(note["id"]))

    # -- list ---------------------------------------------------------------------------------

    def list_notes(self, req: Request, received: Received) -> Reply:
        filters: dict[str, int] = {}
        for name in _TARGETS:
            if name in req.args:
                value = req.args[name]
                if not value.isdigit():
                    raise self._bad(f"{name} must be an integer", "filter_type")
                filters[name] = int(value)
        start, limit = req.args.get("start", "0"), req.args.get("limit", "100")
        if not start.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= _LIST_MAX:
            raise self._bad(f"start must be >= 0 and limit from 1 to {_LIST_MAX}", "paging")
        found = self.stored(lambda n: all(n[k] == v for k, v in filters.items()))
        sort = req.args.get("sort", "")
        if sort.strip().lower() == "add_time desc":
            found = list(reversed(found))
        elif sort and sort.strip().lower() not in ("add_time asc", "id asc"):
            raise self._bad("sort: the sandbox fake sorts by add_time ASC or DESC", "sort")
        first, count = int(start), int(limit)
        page = found[first : first + count]
        return Reply(
            200,
            {
                "success": True,
                "data": page or None,
                "additional_data": {
                    "pagination": {
                        "start": first,
                        "limit": count,
                        "more_items_in_collection": first + count < len(found),
                        **({"next_start": first + count} if first + count < len(found) else {}),
                    }
                },
            },
        )
