"""The one client of the alert receiver: a JSON POST with a bounded time, nothing retried
(the next alert of the kind comes with its count). The URL is a secret (Slack's incoming
webhook URLs are credentials), so no error message carries it."""

from __future__ import annotations

import json
from typing import Any

import requests

# connect, read seconds: the receiver is a chat service, not the bridge's business.
TIMEOUT = (3.05, 5.0)


class AlertFailed(Exception):
    """The receiver did not take the alert; the message says why without the URL."""


class AlertClient:
    def __init__(self, url: str, *, timeout: tuple[float, float] = TIMEOUT) -> None:
        self._url = url
        self._timeout = timeout
        self._session = requests.Session()

    def __repr__(self) -> str:
        return "AlertClient(<url hidden>)"

    def post(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        try:
            response = self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            )
        except requests.RequestException as exc:
            # requests' own text names the URL: keep only what kind of failure it was.
            raise AlertFailed(
                f"the alert receiver could not be reached ({type(exc).__name__})"
            ) from None
        if not 200 <= response.status_code < 300:
            raise AlertFailed(f"the alert receiver answered {response.status_code}")

    def close(self) -> None:
        self._session.close()
