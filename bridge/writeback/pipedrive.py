"""Pipedrive: a note on the deal (person, organization), found again among its notes.

https://developers.pipedrive.com/docs/api/v1/Notes#addNote and #getNotes
"""

from __future__ import annotations

from bridge.writeback.base import ErrorKind, Job, Sink, SinkError, created_id

_FIELD = {"deal": "deal_id", "person": "person_id", "organization": "org_id"}


class PipedriveNote(Sink):
    name = "pipedrive-note"
    credentials = ("api_token_env",)
    objects = ("deal", "person", "organization")
    # The burst limit of the lowest plan: 20 requests per 2 seconds per token.
    default_rate = (20, 2.0)

    def headers(self) -> dict[str, str]:
        return {"x-api-token": self.config.secrets["api_token_env"]}

    def _target(self, job: Job) -> tuple[str, int]:
        if not job.record.isdigit():
            raise SinkError(ErrorKind.REJECTED, f"not a Pipedrive id: {job.record[:40]!r}")
        return _FIELD[self.config.object or self.objects[0]], int(job.record)

    def write(self, job: Job) -> str:
        field, record = self._target(job)
        answer = self.json_of(
            self.request("POST", "/api/v1/notes", json={"content": job.text, field: record})
        )
        data = answer.get("data") if isinstance(answer, dict) else None
        return created_id(data.get("id") if isinstance(data, dict) else None)

    def find(self, job: Job) -> str | None:
        field, record = self._target(job)
        params = {field: str(record), "sort": "add_time DESC", "limit": "100", "start": "0"}
        answer = self.json_of(self.request("GET", "/api/v1/notes", params=params))
        for note in (answer.get("data") if isinstance(answer, dict) else None) or []:
            if job.marker in (note.get("content") or ""):
                return created_id(note.get("id"))
        return None
