"""HubSpot: a note on the deal (ticket, contact, company), found again by the notes search.

https://developers.hubspot.com/docs/api-reference/crm-notes-v3 (create, associations) and
https://developers.hubspot.com/docs/guides/api/crm/search (search).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.writeback.base import Job, Sink, created_id

# HubSpot-defined association type ids, note → record.
_ASSOCIATION = {"deal": 214, "ticket": 228, "contact": 202, "company": 190}


class HubSpotNote(Sink):
    name = "hubspot-note"
    default_base_url = "https://api.hubapi.com"
    credentials = ("token_env",)
    objects = ("deal", "ticket", "contact", "company")
    # Private apps: 100 requests per 10 seconds on Free/Starter (190 on Professional/Enterprise).
    default_rate = (100, 10.0)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secrets['token_env']}"}

    @property
    def object(self) -> str:
        return self.config.object or self.objects[0]

    def write(self, job: Job) -> str:
        body = {
            "properties": {
                # ISO 8601 in UTC (HubSpot also takes epoch milliseconds).
                "hs_timestamp": datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "hs_note_body": job.text,
            },
            "associations": [
                {
                    "to": {"id": job.record},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": _ASSOCIATION[self.object],
                        }
                    ],
                }
            ],
        }
        answer = self.json_of(self.request("POST", "/crm/v3/objects/notes", json=body))
        return created_id(answer.get("id") if isinstance(answer, dict) else None)

    def find(self, job: Job) -> str | None:
        # Notes of the record whose body holds the delivery id as a token; the exact marker
        # is checked here, since CONTAINS_TOKEN matches words, not substrings.
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": f"associations.{self.object}",
                            "operator": "EQ",
                            "value": job.record,
                        },
                        {
                            "propertyName": "hs_note_body",
                            "operator": "CONTAINS_TOKEN",
                            "value": f"*{job.marker.strip('[]')}*",
                        },
                    ]
                }
            ],
            "properties": ["hs_note_body"],
            "limit": 100,
        }
        answer = self.json_of(self.request("POST", "/crm/v3/objects/notes/search", json=body))
        for note in answer.get("results", []) if isinstance(answer, dict) else []:
            text = (note.get("properties") or {}).get("hs_note_body") or ""
            if job.marker in text:
                return created_id(note.get("id"))
        return None
