"""The preset interface (request in, verified items out) and the body parsing every preset shares.

A preset sees one `InboundRequest`, checks it on the raw bytes in `verify`, then turns it into a
`Parsed` payload with one `Item` per thing to act on; nothing here knows a vendor's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qsl

from bridge import jsonbody
from bridge.core.limits import bounded_key
from bridge.errors import BadRequest, UnsupportedMediaType

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class InboundRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    content_type: str
    received_at: float


@dataclass(frozen=True)
class Item:
    event: Any
    idempotency_key: str


@dataclass(frozen=True)
class Parsed:
    payload: Any
    items: list[Item]


@dataclass(frozen=True)
class AuthConfig:
    """Credentials of a sender that cannot sign; any configured token or pair is accepted."""

    header: str | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    bearer: bool = False
    basic: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class HmacConfig:
    """HMAC-SHA256 of the raw body in a named header, for `generic` senders that can sign."""

    header: str
    secrets: tuple[str, ...] = field(repr=False)
    encoding: str = "hex"
    prefix: str = ""


@dataclass(frozen=True)
class SourceOptions:
    secrets: tuple[str, ...] = field(default=(), repr=False)
    auth: AuthConfig | None = None
    hmac: HmacConfig | None = None
    organization_ids: tuple[str, ...] = ()
    tolerance: float = 300.0


def body_hash_key(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def get_header(request: InboundRequest, name: str) -> str | None:
    """A header value by case-insensitive name (the web layer lower-cases keys; be safe anyway)."""
    lowered = name.lower()
    value = request.headers.get(lowered)
    if value is not None:
        return value
    for key, candidate in request.headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def idempotency_header_key(request: InboundRequest) -> str | None:
    value = (get_header(request, "Idempotency-Key") or "").strip()
    return bounded_key(value) if value else None


def is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def decode_text(body: bytes) -> str:
    try:
        # utf-8-sig: a leading byte-order mark is harmless and some tools add one.
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest("the request body is not valid UTF-8") from exc


def check_storable(values: Any) -> None:
    """Refuse NUL and unpaired surrogates in any string (key or value) of a parsed body."""
    pending = [values]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and jsonbody.unstorable(value):
            raise BadRequest(
                "the request body holds a NUL character or an unpaired surrogate",
                reason="bad_characters",
            )


def parse_json(body: bytes, *, allow_array: bool = False) -> Any:
    """The body as a JSON object (or array when `allow_array`); anything else is a BadRequest.

    Bounded before parsing (nesting depth) and checked after it: NaN, Infinity and numbers that
    overflow to infinity are refused, and so are strings holding NUL or unpaired surrogates.
    """
    text = decode_text(body)
    value = jsonbody.parse(text)
    if not (isinstance(value, dict) or (allow_array and isinstance(value, list))):
        wanted = "an object or an array" if allow_array else "an object"
        raise BadRequest(f"the JSON body must be {wanted}, not {type(value).__name__}")
    # Both only ever reach a string as a \u escape: raw NUL is invalid JSON, and text decoded
    # from UTF-8 holds no surrogates.
    if "\\u" in text:
        check_storable(value)
    return value


def parse_form(body: bytes) -> dict[str, str]:
    """A form body as a flat mapping of strings; a repeated field keeps its last value."""
    text = decode_text(body)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("the form body holds percent-escapes that are not UTF-8") from exc
    fields = dict(pairs)
    check_storable(fields)
    return fields


class Source:
    """One sender's preset: validates its options once, then verifies and parses requests."""

    name: ClassVar[str]
    default_when: ClassVar[str | None] = None
    # A workflow action fires for whatever its workflow enrols: without a `when` the route would
    # cancel on every webhook, so such presets refuse a route that has none.
    requires_when: ClassVar[bool] = False
    default_respond: ClassVar[str] = "sync"
    accepts_form: ClassVar[bool] = False
    batch: ClassVar[bool] = False
    # The headers holding this preset's signature: never stored (see `credential_headers`).
    signature_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: SourceOptions) -> None:
        if not options.tolerance > 0:
            raise ValueError(f"{self.name}: tolerance must be a positive number of seconds")
        self.options = options

    def verify(self, request: InboundRequest) -> None:
        raise NotImplementedError

    def credential_headers(self) -> frozenset[str]:
        """Lower-cased names of every header that carries this route's credentials: the
        preset's signature headers, the `auth` header (Authorization for bearer and Basic)
        and the `hmac` header."""
        names = {name.lower() for name in self.signature_headers}
        auth, signed = self.options.auth, self.options.hmac
        if auth is not None:
            names.add((auth.header or "Authorization").lower())
        if signed is not None:
            names.add(signed.header.lower())
        return frozenset(names)

    def credential_values(self) -> tuple[str, ...]:
        """Every secret value the route is configured with, for scrubbing what is stored."""
        values = list(self.options.secrets)
        if self.options.auth is not None:
            values += self.options.auth.tokens
            values += [part for pair in self.options.auth.basic for part in pair]
        if self.options.hmac is not None:
            values += self.options.hmac.secrets
        return tuple(v for v in values if v)

    def parse(self, request: InboundRequest) -> Parsed:
        payload = self.parse_body(request)
        return Parsed(payload=payload, items=[Item(payload, self.item_key(request, payload))])

    def item_key(self, request: InboundRequest, payload: Any) -> str:
        return idempotency_header_key(request) or body_hash_key(request.body)

    def acknowledge(self, status: int, body: dict[str, Any]) -> tuple[bytes, int, str] | None:
        return None

    def parse_body(self, request: InboundRequest) -> Any:
        """The body by content type: JSON always, form-encoded when the preset accepts it."""
        content_type = request.content_type
        if is_json_type(content_type):
            self._require_body(request)
            return parse_json(request.body, allow_array=self.batch)
        if self.accepts_form and content_type == FORM_TYPE:
            self._require_body(request)
            return parse_form(request.body)
        accepted = "application/json" + (f" or {FORM_TYPE}" if self.accepts_form else "")
        self.unsupported(request, accepted)

    def unsupported(self, request: InboundRequest, accepted: str) -> NoReturn:
        got = request.content_type or "no content type"
        raise UnsupportedMediaType(f"the {self.name} preset accepts {accepted}, not {got}")

    @staticmethod
    def _require_body(request: InboundRequest) -> None:
        if not request.body.strip():
            raise BadRequest("the request body is empty")
