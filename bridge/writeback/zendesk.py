"""Zendesk: a private comment on the ticket, tagged so the ticket's own trigger can skip it;
found again in the ticket's comments.

https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-ticket and
https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_comments/#list-comments
"""

from __future__ import annotations

import base64

from bridge.writeback.base import ErrorKind, Job, Sink, SinkError, created_id

# The tag a trigger's condition excludes (README: Write-back), so the bridge's own update does
# not fire the route's webhook again.
TAG = "meetbit_bridge"
# Pages of comments read when looking for the marker (newest first, 100 each).
_PAGES = 3


class ZendeskComment(Sink):
    name = "zendesk-comment"
    credential_choices = (("email_env", "api_token_env"), ("bearer_env",))
    objects = ("ticket",)
    # Suite Team: 200 requests per minute for the account (higher plans allow more).
    default_rate = (200, 60.0)

    def headers(self) -> dict[str, str]:
        secrets = self.config.secrets
        if "bearer_env" in secrets:
            return {"Authorization": f"Bearer {secrets['bearer_env']}"}
        # API token: Basic base64("{email}/token:{api_token}").
        pair = f"{secrets['email_env']}/token:{secrets['api_token_env']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def _ticket(self, job: Job) -> str:
        if not job.record.isdigit():
            raise SinkError(ErrorKind.REJECTED, f"not a Zendesk ticket id: {job.record[:40]!r}")
        return job.record

    def write(self, job: Job) -> str:
        body = {
            "ticket": {
                "comment": {"body": job.text, "public": False},
                "additional_tags": [TAG],
            }
        }
        answer = self.json_of(
            self.request("PUT", f"/api/v2/tickets/{self._ticket(job)}", json=body)
        )
        audit = answer.get("audit") if isinstance(answer, dict) else None
        if isinstance(audit, dict):
            for event in audit.get("events") or []:
                if isinstance(event, dict) and event.get("type") == "Comment":
                    return created_id(event.get("id"))
            return created_id(audit.get("id"))
        return created_id(None)

    def find(self, job: Job) -> str | None:
        path = f"/api/v2/tickets/{self._ticket(job)}/comments"
        params = {"sort_order": "desc", "per_page": "100"}
        for _ in range(_PAGES):
            answer = self.json_of(self.request("GET", path, params=params))
            if not isinstance(answer, dict):
                return None
            for comment in answer.get("comments") or []:
                text = comment.get("body") or comment.get("plain_body") or ""
                if job.marker in text:
                    return created_id(comment.get("id"))
            following = answer.get("next_page")
            if not following:
                return None
            # The next page's URL as Zendesk gives it, on our own origin (loopback in tests).
            path = "/api/v2/" + str(following).split("/api/v2/", 1)[-1]
            params = {}
        return None
