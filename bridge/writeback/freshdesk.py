"""Freshdesk: a private note on the ticket, found again in the ticket's conversations.

https://developers.freshdesk.com/api/#add_note_to_a_ticket and #list_all_ticket_notes
"""

from __future__ import annotations

import base64

from bridge.writeback.base import ErrorKind, Job, Sink, SinkError, created_id


class FreshdeskNote(Sink):
    name = "freshdesk-note"
    credentials = ("api_key_env",)
    objects = ("ticket",)
    # The lowest paid plan's budget: 200 calls per minute for the account.
    default_rate = (200, 60.0)

    def headers(self) -> dict[str, str]:
        # The API key as the Basic user name, any password ("X" in Freshdesk's examples).
        pair = f"{self.config.secrets['api_key_env']}:X".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def _ticket(self, job: Job) -> str:
        if not job.record.isdigit():
            raise SinkError(ErrorKind.REJECTED, f"not a Freshdesk ticket id: {job.record[:40]!r}")
        return job.record

    def write(self, job: Job) -> str:
        body = {"body": job.text, "private": True}
        answer = self.json_of(
            self.request("POST", f"/api/v2/tickets/{self._ticket(job)}/notes", json=body)
        )
        return created_id(answer.get("id") if isinstance(answer, dict) else None)

    def find(self, job: Job) -> str | None:
        path = f"/api/v2/tickets/{self._ticket(job)}/conversations"
        answer = self.json_of(self.request("GET", path, params={"per_page": "100"}))
        for note in answer if isinstance(answer, list) else []:
            text = (note.get("body_text") or "") + (note.get("body") or "")
            if job.marker in text:
                return created_id(note.get("id"))
        return None
