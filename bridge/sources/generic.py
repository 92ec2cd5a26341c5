"""Any sender that can set a header: Zapier, Make, n8n, curl. A token, Basic pair or body HMAC."""

from __future__ import annotations

from bridge.sources.auth import check_auth, check_hmac, reject_unused
from bridge.sources.base import InboundRequest, Source, SourceOptions


class GenericSource(Source):
    name = "generic"
    accepts_form = True  # Zapier "Form", Make and n8n form bodies

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, auth=True, hmac_=True)
        if options.auth is None and options.hmac is None:
            raise ValueError(f"{self.name}: auth or hmac (or both) is required")

    def verify(self, request: InboundRequest) -> None:
        # Both are checked when both are configured.
        if self.options.hmac is not None:
            check_hmac(self.options.hmac, request)
        if self.options.auth is not None:
            check_auth(self.options.auth, request)
