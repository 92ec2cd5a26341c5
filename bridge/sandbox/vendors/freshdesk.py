"""Freshdesk's ticket notes API (v2) as the `freshdesk-note` write-back uses it: add a private
note to a ticket, and list a ticket's conversations (the marker look-up).

- `POST /api/v2/tickets/{id}/notes` `{"body", "private": true}`, 201 with the conversation;
  https://developers.freshdesk.com/api/#add_note_to_a_ticket
- `GET /api/v2/tickets/{id}/conversations` (`page`, `per_page` ≤ 100), 200 with a list; a
  `Link: <…>; rel="next"` header when there is a next page;
  https://developers.freshdesk.com/api/#list_all_ticket_notes

Auth: `Authorization: Basic base64(api_key:X)` (Freshdesk ignores the password); 401
`{"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}`,
`denied_key` gets 403 `access_denied`. Validation: 400 `{"description": "Validation failed",
"errors": [{field, message, code}]}`; 415 `invalid_content_type`; a missing ticket 404 with an
empty body; 429 with `Retry-After` and `X-RateLimit-*`.
https://developers.freshdesk.com/api/#error
"""

from __future__ import annotations

from typing import Any

from flask import Request, Response

from bridge.sandbox.vendors.base import (
    Endpoint,
    Received,
    Refused,
    Reply,
    VendorFake,
    basic_credentials,
    iso_now,
    json_answer,
    same_secret,
)

__all__ = ["FreshdeskFake"]

_AGENT_ID = 80_000_000_001
_FIRST_NOTE_ID = 70_000_000_000
_PER_PAGE_MAX = 100
_FIELDS = ("body", "private", "incoming", "notify_emails", "user_id")


class FreshdeskFake(VendorFake):
    """Freshdesk ticket notes; see the module docstring. Tickets exist unless their id is in
    `missing_ids`."""

    name = "freshdesk"
    endpoints = (
        Endpoint("/api/v2/tickets/<int:ticket_id>/notes", "POST", "add_note", writes=True),
        Endpoint("/api/v2/tickets/<int:ticket_id>/conversations", "GET", "list_conversations"),
    )

    def __init__(
        self,
        *,
        api_key: str = "freshdesk-sandbox-api-key",
        denied_key: str = "freshdesk-sandbox-restricted-key",
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(rate_limit=rate_limit)
        self.api_key = api_key
        self.denied_key = denied_key

    def credentials_hint(self) -> str:
        return f"Basic {self.api_key}:X"

    # -- Freshdesk's words --------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        if status == 404:
            return Response(b"", status=404)
        if extra.get("errors") is not None:
            return json_answer(status, {"description": "Validation failed", **extra})
        codes = {
            401: "invalid_credentials",
            403: "access_denied",
            415: "invalid_content_type",
            405: "method_not_allowed",
        }
        return json_answer(status, {"code": codes.get(status, code), "message": message})

    def throttled(self, retry_after: int, why: str) -> Response:
        response = json_answer(
            429, {"message": "You have exceeded the limit of requests per minute"}
        )
        response.headers.update(
            {
                "Retry-After": str(retry_after),
                "X-RateLimit-Total": str(self._window.limit if self._window else 50),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Used-CurrentRequest": "1",
            }
        )
        return response

    def authenticate(self, req: Request) -> None:
        credentials = basic_credentials(req)
        if credentials is None:
            raise self.refuse(
                401, "", "You have to be logged in to perform this action.", "missing_auth"
            )
        key, _ = credentials
        if same_secret(key, self.denied_key):
            raise self.refuse(
                403, "", "You are not authorized to perform this action.", "forbidden"
            )
        if not same_secret(key, self.api_key):
            raise self.refuse(
                401, "", "You have to be logged in to perform this action.", "wrong_key"
            )

    def json_body(self, req: Request, received: Received) -> Any:
        if req.mimetype != "application/json":
            raise self.refuse(
                415, "", f"Content-Type header is set to {req.content_type or ''}. It should "
                "be set to application/json", "content_type",
            )  # fmt: skip
        try:
            return super().json_body(req, received)
        except Refused as refused:
            raise self.refuse(
                400, "invalid_json", "Request body has invalid json format", refused.reason
            ) from refused

    def _invalid(self, field: str, message: str, code: str, reason: str) -> Refused:
        errors = [{"field": field, "message": message, "code": code}]
        return self.refuse(400, "", "Validation failed", reason, errors=errors)

    def _check_ticket(self, ticket_id: int) -> None:
        if ticket_id < 1 or str(ticket_id) in self.missing_ids:
            raise self.refuse(404, "", "", "ticket_not_found")

    # -- add ----------------------------------------------------------------------------------

    def add_note(self, req: Request, received: Received, ticket_id: int) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict):
            raise self.refuse(400, "invalid_json", "Request body has invalid json format", "shape")
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise self._invalid(
                unknown[0], "Unexpected/invalid field in request", "invalid_field", "unknown_field"
            )
        text = body.get("body")
        if text is None:
            raise self._invalid("body", "It should be a/an String", "missing_field", "missing_body")
        if not isinstance(text, str) or not text.strip():
            raise self._invalid(
                "body", "It should be a/an String", "datatype_mismatch", "body_type"
            )
        private = body.get("private")
        if not isinstance(private, bool):
            # The bridge always says `private: true`; Freshdesk's default would do, but a
            # missing value is the one that could make a note public by a later default.
            raise self._invalid(
                "private", "It should be a/an Boolean", "datatype_mismatch", "private"
            )
        self._check_ticket(ticket_id)
        now = iso_now()[:-5] + "Z"  # Freshdesk's timestamps have no milliseconds
        note = {
            "body": f"<div>{_escape(text)}</div>",
            "body_text": text,
            "id": _FIRST_NOTE_ID + self.new_id(),
            "incoming": bool(body.get("incoming", False)),
            "private": private,
            "user_id": _AGENT_ID,
            "support_email": None,
            "source": 2,
            "category": 2,
            "ticket_id": ticket_id,
            "to_emails": None,
            "from_email": None,
            "cc_emails": None,
            "bcc_emails": None,
            "notified_to": [],
            "attachments": [],
            "created_at": now,
            "updated_at": now,
        }
        self.store(note)
        return Reply(201, note, created=note, created_id=str(note["id"]))

    # -- list ---------------------------------------------------------------------------------

    def list_conversations(self, req: Request, received: Received, ticket_id: int) -> Reply:
        page, per_page = req.args.get("page", "1"), req.args.get("per_page", "30")
        if not page.isdigit() or int(page) < 1:
            raise self._invalid("page", "It should be a Positive Integer", "invalid_value", "page")
        if not per_page.isdigit() or not 1 <= int(per_page) <= _PER_PAGE_MAX:
            raise self._invalid(
                "per_page", f"It should be a Positive Integer less than or equal to "
                f"{_PER_PAGE_MAX}", "invalid_value", "per_page",
            )  # fmt: skip
        self._check_ticket(ticket_id)
        found = self.stored(lambda n: n["ticket_id"] == ticket_id)
        first = (int(page) - 1) * int(per_page)
        shown = found[first : first + int(per_page)]
        headers = {}
        if first + int(per_page) < len(found):
            nxt = f"{req.base_url}?page={int(page) + 1}&per_page={per_page}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(200, shown, headers=headers)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
