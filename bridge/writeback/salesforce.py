"""Salesforce: a completed Task on the record (WhatId), found again with a SOQL query; the
OAuth 2.0 client-credentials token is cached and fetched again on a 401.

https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_create.htm
"""

from __future__ import annotations

import re
import threading

import requests

from bridge.writeback.base import (
    ErrorKind,
    Job,
    Sink,
    SinkConfig,
    SinkError,
    created_id,
    retry_after_seconds,
)

API = "/services/data/v62.0"
# Record ids are 15 or 18 alphanumeric characters; anything else never reaches a SOQL string.
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
SUBJECT_MAX = 255


class SalesforceTask(Sink):
    name = "salesforce-task"
    credentials = ("client_id_env", "client_secret_env")
    # Salesforce budgets API calls per day, not per second; this keeps one bridge polite.
    default_rate = (10, 1.0)

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        self._token: str | None = None
        self._token_lock = threading.Lock()

    def _fetch_token(self) -> str:
        try:
            response = self.request(
                "POST",
                "/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.config.secrets["client_id_env"],
                    "client_secret": self.config.secrets["client_secret_env"],
                },
                authorized=False,
            )
        except SinkError as exc:
            if exc.kind != ErrorKind.REJECTED:
                raise
            # `invalid_client`, `invalid_client_id`, a flow not enabled: the connected app's
            # credentials, which an operator fixes; retried like any 401.
            raise SinkError(
                ErrorKind.AUTH, f"token refused: {exc.detail}", status=exc.status
            ) from exc
        answer = self.json_of(response)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise SinkError(ErrorKind.TRANSIENT, "the token answer holds no access_token")
        return token

    def headers(self) -> dict[str, str]:
        with self._token_lock:
            if self._token is None:
                self._token = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def renew_auth(self) -> bool:
        # An expired or revoked token answers 401 (INVALID_SESSION_ID): fetch a new one.
        with self._token_lock:
            self._token = self._fetch_token()
        return True

    def refusal(self, response: requests.Response) -> SinkError | None:
        # An exhausted API allocation is a 403 REQUEST_LIMIT_EXCEEDED, not a 429:
        # https://developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm
        if response.status_code != 403 or "REQUEST_LIMIT_EXCEEDED" not in response.text:
            return None
        return SinkError(
            ErrorKind.RATE_LIMITED,
            f"HTTP 403: {response.text[:200]}",
            status=403,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _what(self, job: Job) -> str:
        if not _ID_RE.fullmatch(job.record):
            raise SinkError(ErrorKind.REJECTED, f"not a Salesforce record id: {job.record[:40]!r}")
        return job.record

    def write(self, job: Job) -> str:
        first_line = job.text.splitlines()[0] if job.text else job.text
        subject = first_line
        if len(subject) > SUBJECT_MAX:
            subject = subject[: SUBJECT_MAX - 1] + "…"
        body = {
            "Subject": subject,
            "Description": job.text,
            "WhatId": self._what(job),
            "Status": "Completed",
        }
        answer = self.json_of(self.request("POST", f"{API}/sobjects/Task", json=body))
        return created_id(answer.get("id") if isinstance(answer, dict) else None)

    def find(self, job: Job) -> str | None:
        # Description is a long text area, which SOQL cannot filter on: the record's Tasks are
        # read and the marker checked here.
        soql = (
            f"SELECT Id, Description FROM Task WHERE WhatId = '{self._what(job)}' "
            "ORDER BY CreatedDate DESC LIMIT 200"
        )
        answer = self.json_of(self.request("GET", f"{API}/query", params={"q": soql}))
        for task in (answer.get("records") if isinstance(answer, dict) else None) or []:
            if job.marker in (task.get("Description") or ""):
                return created_id(task.get("Id"))
        return None
