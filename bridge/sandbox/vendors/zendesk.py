"""Zendesk's ticket API as the `zendesk-comment` write-back uses it: add a private comment and
tags to a ticket, and list a ticket's comments (the marker look-up).

- `PUT /api/v2/tickets/{id}` (or `.json`) `{"ticket": {"comment": {"body", "public": false},
  "additional_tags": [...]}}`, 200 `{ticket, audit}` with the comment among the audit's events;
  https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket
- `GET /api/v2/tickets/{id}/comments` (`sort_order=asc|desc`), 200 `{comments, next_page,
  previous_page, count}`; every ticket starts with its description as the first comment;
  https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/

Auth: `Authorization: Basic base64(email/token:api_token)` or `Bearer <OAuth token>`; 401
`{"error": "Couldn't authenticate you"}`; `denied_token` (an end user's) gets 403 `Forbidden`.
Errors: `{"error": "RecordNotFound", "description": "Not found"}` (404), `{"error":
"RecordInvalid", "description": "Record validation errors", "details": {field: [{description,
error}]}}` (422); 429 `APIRateLimitExceeded` with `Retry-After`.
https://developer.zendesk.com/api-reference/introduction/requests/

Stricter than Zendesk where the bridge's contract is: the ticket may carry only `comment` and
`additional_tags`, the comment only `body` (or `html_body`) and `public` (required, boolean).
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
    bearer_token,
    iso_now,
    json_answer,
    same_secret,
)

__all__ = ["ZendeskFake"]

_AUTHOR_ID = 9_000_000_001  # the API user the token belongs to
_REQUESTER_ID = 9_000_000_002
_FIRST_COMMENT_ID = 40_000_000_000
_FIRST_AUDIT_ID = 41_000_000_000
_TAG_MAX = 80


class ZendeskFake(VendorFake):
    """Zendesk tickets; see the module docstring. Tickets exist on first use (any positive id
    not in `missing_ids`); `tickets` holds them (tags, comments)."""

    name = "zendesk"
    endpoints = (
        Endpoint("/api/v2/tickets/<int:ticket_id>", "PUT", "update_ticket", writes=True),
        Endpoint("/api/v2/tickets/<int:ticket_id>.json", "PUT", "update_ticket_json", writes=True),
        Endpoint("/api/v2/tickets/<int:ticket_id>/comments", "GET", "list_comments"),
        Endpoint("/api/v2/tickets/<int:ticket_id>/comments.json", "GET", "list_comments_json"),
    )

    def __init__(
        self,
        *,
        email: str = "agent@sandbox.zendesk.test",
        api_token: str = "zendesk-sandbox-api-token",
        oauth_token: str = "zendesk-sandbox-oauth-token",
        denied_token: str = "zendesk-sandbox-end-user-token",
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        super().__init__(rate_limit=rate_limit)
        self.email = email
        self.api_token = api_token
        self.oauth_token = oauth_token
        self.denied_token = denied_token
        self.tickets: dict[int, dict[str, Any]] = {}

    def forget(self) -> None:
        with self._lock:
            self.tickets = {}

    def credentials_hint(self) -> str:
        return f"Basic {self.email}/token:{self.api_token} or Bearer {self.oauth_token}"

    # -- Zendesk's words ----------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        body: dict[str, Any]
        if status == 401:
            body = {"error": "Couldn't authenticate you"}
        elif status == 404:
            body = {"error": "RecordNotFound", "description": "Not found"}
        elif status == 429:
            body = {
                "error": "APIRateLimitExceeded",
                "description": "Number of allowed API requests per minute exceeded",
            }
        elif status >= 500:
            body = {"error": "InternalServerError", "description": message}
        else:
            body = {"error": code, "description": message, **extra}
        return json_answer(status, body)

    def authenticate(self, req: Request) -> None:
        token = bearer_token(req)
        if token is not None:
            if same_secret(token, self.oauth_token):
                return
            raise self.refuse(401, "", "", "wrong_token")
        credentials = basic_credentials(req)
        if credentials is None:
            raise self.refuse(401, "", "", "missing_auth")
        user, secret = credentials
        if not user.endswith("/token"):
            # Password access is off for API calls; only API tokens are sandbox credentials.
            raise self.refuse(401, "", "", "password_auth")
        if same_secret(secret, self.denied_token):
            raise self.refuse(
                403, "Forbidden",
                "You do not have access to this page. Please contact the account owner of "
                "this help desk for further help.", "forbidden",
            )  # fmt: skip
        if not (same_secret(user[:-6], self.email) and same_secret(secret, self.api_token)):
            raise self.refuse(401, "", "", "wrong_token")

    def _invalid(self, field: str, description: str, reason: str) -> Refused:
        return self.refuse(
            422, "RecordInvalid", "Record validation errors", reason,
            details={field: [{"description": description, "error": "InvalidValue"}]},
        )  # fmt: skip

    def _ticket(self, ticket_id: int) -> dict[str, Any]:
        if ticket_id < 1 or str(ticket_id) in self.missing_ids:
            raise self.refuse(404, "RecordNotFound", "Not found", "ticket_not_found")
        with self._lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                created = iso_now()
                ticket = self.tickets[ticket_id] = {
                    "id": ticket_id,
                    "subject": f"Sandbox ticket {ticket_id}",
                    "status": "open",
                    "requester_id": _REQUESTER_ID,
                    "tags": [],
                    "created_at": created,
                    "updated_at": created,
                    "comments": [
                        self._comment(
                            f"Ticket {ticket_id} as the requester opened it.", True, _REQUESTER_ID
                        )
                    ],
                }
            return ticket

    def _comment(self, body: str, public: bool, author: int) -> dict[str, Any]:
        return {
            "id": _FIRST_COMMENT_ID + self.new_id(),
            "type": "Comment",
            "author_id": author,
            "body": body,
            "html_body": f'<div class="zd-comment" dir="auto">{_escape(body)}</div>',
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": _FIRST_AUDIT_ID + self.new_id(),
            "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": iso_now(),
            "metadata": {"system": {"client": "meetbit-bridge"}, "custom": {}},
        }

    # -- update -------------------------------------------------------------------------------

    def update_ticket_json(self, req: Request, received: Received, ticket_id: int) -> Reply:
        return self.update_ticket(req, received, ticket_id)

    def update_ticket(self, req: Request, received: Received, ticket_id: int) -> Reply:
        body = self.json_body(req, received)
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            raise self.refuse(
                400, "ParameterMissing", "param is missing or the value is empty: ticket",
                "no_ticket",
            )  # fmt: skip
        update = body["ticket"]
        unknown = sorted(set(body) - {"ticket"}) + sorted(
            set(update) - {"comment", "additional_tags"}
        )
        if unknown:
            raise self._invalid(unknown[0], "is not a field the write-back sends", "unknown_field")
        comment = update.get("comment")
        if not isinstance(comment, dict):
            raise self._invalid("comment", "Comment: is required, an object", "no_comment")
        unknown = sorted(set(comment) - {"body", "html_body", "public"})
        if unknown:
            raise self._invalid(f"comment.{unknown[0]}", "is not a comment field", "comment_field")
        text = comment.get("body", comment.get("html_body"))
        if not isinstance(text, str) or not text.strip():
            raise self._invalid("base", "Comment: Body can't be blank", "blank_comment")
        public = comment.get("public")
        if not isinstance(public, bool):
            raise self._invalid("comment.public", "is required, true or false", "comment_public")
        tags = update.get("additional_tags", [])
        if not isinstance(tags, list) or not all(_valid_tag(t) for t in tags):
            raise self._invalid(
                "additional_tags", "a list of tags (no spaces, at most 80 characters)", "tags"
            )
        ticket = self._ticket(ticket_id)
        written = self._comment(text, public, _AUTHOR_ID)
        with self._lock:
            previous = list(ticket["tags"])
            ticket["tags"] = sorted(set(previous) | {t.lower() for t in tags})
            ticket["comments"].append(written)
            ticket["updated_at"] = written["created_at"]
            shown = _ticket_view(ticket)
        record = {"ticket_id": ticket_id, "tags": list(ticket["tags"]), **written}
        self.store(record)
        events: list[dict[str, Any]] = [written]
        if ticket["tags"] != previous:
            events.append(
                {
                    "id": written["id"] + 1,
                    "type": "Change",
                    "field_name": "tags",
                    "value": ticket["tags"],
                    "previous_value": previous,
                }
            )
        audit = {
            "id": written["audit_id"],
            "ticket_id": ticket_id,
            "created_at": written["created_at"],
            "author_id": _AUTHOR_ID,
            "metadata": written["metadata"],
            "via": written["via"],
            "events": events,
        }
        return Reply(
            200, {"ticket": shown, "audit": audit}, created=record, created_id=str(written["id"])
        )

    # -- read ---------------------------------------------------------------------------------

    def list_comments_json(self, req: Request, received: Received, ticket_id: int) -> Reply:
        return self.list_comments(req, received, ticket_id)

    def list_comments(self, req: Request, received: Received, ticket_id: int) -> Reply:
        order = req.args.get("sort_order", "asc")
        if order not in ("asc", "desc"):
            raise self.refuse(
                400, "InvalidPaginationParameter", "sort_order must be asc or desc", "sort_order"
            )
        ticket = self._ticket(ticket_id)
        with self._lock:
            comments = [dict(c) for c in ticket["comments"]]
        if order == "desc":
            comments.reverse()
        return Reply(
            200,
            {
                "comments": comments,
                "next_page": None,
                "previous_page": None,
                "count": len(comments),
            },
        )


def _valid_tag(tag: Any) -> bool:
    return isinstance(tag, str) and bool(tag) and len(tag) <= _TAG_MAX and " " not in tag


def _ticket_view(ticket: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in ticket.items() if k != "comments"}
    shown["description"] = ticket["comments"][0]["body"]
    return shown


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
