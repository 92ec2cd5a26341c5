"""Freshdesk "Trigger webhook" automation action: unsigned, so a configured credential is required.

https://support.freshdesk.com/support/solutions/articles/132589-using-webhooks-in-automation-rules
"""

from __future__ import annotations

from bridge.sources.auth import check_auth, reject_unused
from bridge.sources.base import AuthConfig, InboundRequest, Source, SourceOptions


class FreshdeskSource(Source):
    name = "freshdesk"
    accepts_form = True  # the action's "X-FORM-URLENCODED" encoding

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, auth=True)
        if options.auth is None:
            raise ValueError(f"{self.name}: Freshdesk does not sign requests; auth is required")
        self._auth: AuthConfig = options.auth

    def verify(self, request: InboundRequest) -> None:
        check_auth(self._auth, request)
