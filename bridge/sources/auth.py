"""Credential checks shared by the presets: tokens, Basic auth, body HMACs and timestamp windows.

Every comparison is constant time and tries every configured credential (rotation), and every
failure is an `Unauthorized` with a machine-readable reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

from bridge.errors import Unauthorized
from bridge.sources.base import AuthConfig, HmacConfig, InboundRequest, SourceOptions, get_header

HMAC_ENCODINGS = ("hex", "base64")
# Epoch seconds have 10 digits today and milliseconds 13; 15 still reads any real clock.
MAX_TIMESTAMP_DIGITS = 15


def to_bytes(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def matches_any(expected: Iterable[bytes], given: bytes) -> bool:
    """Constant-time membership: every candidate is compared, so timing says nothing of which."""
    found = False
    for candidate in expected:
        found |= hmac.compare_digest(candidate, given)
    return found


def require_header(request: InboundRequest, name: str) -> str:
    value = get_header(request, name)
    if value is None or not value.strip():
        raise Unauthorized(f"the {name} header is missing", reason="missing_header")
    return value.strip()


def decode_base64(value: str) -> bytes:
    """Strict standard base64; a malformed value is a mismatch, never an error of ours."""
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized(
            "the signature is not valid base64", reason="signature_mismatch"
        ) from exc


def decode_hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value.strip())
    except ValueError as exc:
        raise Unauthorized("the signature is not valid hex", reason="signature_mismatch") from exc


def parse_epoch(value: str, *, header: str, unit: str) -> int:
    """An epoch timestamp header as ASCII digits only, bounded in length.

    int() alone would also take signs, underscores and non-ASCII digits, and a 400-digit value
    overflows the float division that follows; none of those is a clock reading.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_TIMESTAMP_DIGITS:
        raise Unauthorized(
            f"{header} is not epoch {unit} (at most {MAX_TIMESTAMP_DIGITS} digits)",
            reason="bad_timestamp",
        )
    return int(value)


def check_timestamp(timestamp: float, *, received_at: float, tolerance: float) -> None:
    """Reject a signed timestamp outside the window, in either direction."""
    if timestamp < received_at - tolerance:
        raise Unauthorized(
            f"the signed timestamp is more than {tolerance:g} s old", reason="stale_timestamp"
        )
    if timestamp > received_at + tolerance:
        raise Unauthorized(
            f"the signed timestamp is more than {tolerance:g} s in the future",
            reason="stale_timestamp",
        )


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


# ---------------------------------------------------------------------------------------------
# Option validation (at startup, so a route that cannot work never starts)


def validate_secrets(preset: str, what: str, secrets: tuple[str, ...]) -> None:
    if any(not secret for secret in secrets):
        raise ValueError(f"{preset}: {what} holds an empty value")


def validate_auth(preset: str, auth: AuthConfig) -> None:
    if auth.header is not None and auth.bearer:
        raise ValueError(f"{preset}: auth takes either a header token or a bearer token, not both")
    if auth.tokens and auth.header is None and not auth.bearer:
        raise ValueError(f"{preset}: auth tokens need a header name or bearer")
    if (auth.header is not None or auth.bearer) and not auth.tokens:
        raise ValueError(f"{preset}: auth names a token but no token value is set")
    if not auth.tokens and not auth.basic:
        raise ValueError(f"{preset}: auth has no credential")
    if auth.header is not None and not auth.header.strip():
        raise ValueError(f"{preset}: auth header name is empty")
    validate_secrets(preset, "an auth token", auth.tokens)
    for user, password in auth.basic:
        if not user or not password:
            raise ValueError(f"{preset}: basic auth needs a non-empty user and password")
        if ":" in user:
            raise ValueError(f"{preset}: a basic auth user name cannot contain ':'")


def validate_hmac(preset: str, config: HmacConfig) -> None:
    if not config.header.strip():
        raise ValueError(f"{preset}: hmac needs a header name")
    if config.encoding not in HMAC_ENCODINGS:
        raise ValueError(f"{preset}: hmac encoding must be hex or base64, not {config.encoding!r}")
    if not config.secrets:
        raise ValueError(f"{preset}: hmac has no secret")
    validate_secrets(preset, "an hmac secret", config.secrets)


def reject_unused(
    preset: str,
    options: SourceOptions,
    *,
    secrets: bool = False,
    auth: bool = False,
    hmac_: bool = False,
    organization_ids: bool = False,
) -> None:
    """A credential a preset never checks would only give a false sense of safety: refuse it."""
    unused = []
    if options.secrets and not secrets:
        unused.append("secret_env")
    if options.auth is not None and not auth:
        unused.append("auth")
    if options.hmac is not None and not hmac_:
        unused.append("hmac")
    if options.organization_ids and not organization_ids:
        unused.append("organization_ids")
    if unused:
        raise ValueError(f"{preset}: this preset does not use {', '.join(unused)}")
    if options.secrets:
        validate_secrets(preset, "secret_env", options.secrets)
    if options.auth is not None:
        validate_auth(preset, options.auth)
    if options.hmac is not None:
        validate_hmac(preset, options.hmac)


# ---------------------------------------------------------------------------------------------
# Request checks


def _basic_credentials(value: str) -> tuple[bytes, bytes] | None:
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def _bearer_token(value: str) -> bytes | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return to_bytes(token.strip())


def check_auth(auth: AuthConfig, request: InboundRequest) -> None:
    """Accept the request if any configured token or Basic pair matches."""
    presented = False
    ok = False
    authorization = get_header(request, "Authorization")
    if auth.header is not None:
        value = get_header(request, auth.header)
        if value is not None:
            presented = True
            ok |= matches_any((to_bytes(t) for t in auth.tokens), to_bytes(value.strip()))
    if auth.bearer and authorization is not None:
        presented = True
        token = _bearer_token(authorization)
        if token is not None:
            ok |= matches_any((to_bytes(t) for t in auth.tokens), token)
    if auth.basic and authorization is not None:
        presented = True
        pair = _basic_credentials(authorization)
        if pair is not None:
            user, password = pair
            for want_user, want_password in auth.basic:
                # Both halves are always compared: no early exit on a known user name.
                same_user = hmac.compare_digest(to_bytes(want_user), user)
                same_password = hmac.compare_digest(to_bytes(want_password), password)
                ok |= same_user & same_password
    if not presented:
        where = auth.header if auth.header is not None else "Authorization"
        raise Unauthorized(f"the {where} header is missing", reason="missing_header")
    if not ok:
        raise Unauthorized("the credentials are not valid", reason="bad_credentials")


def check_hmac(config: HmacConfig, request: InboundRequest) -> None:
    """HMAC-SHA256 of the raw body, hex or base64, optionally behind a prefix like `sha256=`."""
    value = require_header(request, config.header)
    if config.prefix:
        if value[: len(config.prefix)].lower() != config.prefix.lower():
            raise Unauthorized(
                f"the {config.header} header does not start with {config.prefix!r}",
                reason="signature_mismatch",
            )
        value = value[len(config.prefix) :]
    given = decode_hex(value) if config.encoding == "hex" else decode_base64(value)
    expected = (hmac_sha256(to_bytes(secret), request.body) for secret in config.secrets)
    if not matches_any(expected, given):
        raise Unauthorized("the body signature does not match", reason="signature_mismatch")
