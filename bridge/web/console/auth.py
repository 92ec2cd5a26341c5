"""Console sign-in: a token exchanged for a signed session cookie, its role, and the CSRF token
every state-changing form carries.

The cookie holds `{role, csrf, token fingerprint}` signed (itsdangerous, HMAC-SHA256) with
`BRIDGE_SESSION_SECRET`, or a key derived from the admin token. Signing is Flask's own
dependency, and the console's one cookie is small enough not to need a session store. The
fingerprint ties a session to the token it was opened with: rotating that token closes every
session opened with the old one, even when the session key stays.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bridge.settings import Settings

COOKIE = "bridge_console"
LIFETIME = timedelta(hours=8)
ADMIN, VIEWER = "admin", "viewer"
_SALT = "meetbit-bridge console session"


@dataclass(frozen=True)
class Session:
    role: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


class Sessions:
    """Signs and reads the console's session cookies for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        assert settings.admin_token is not None, "the console is off without an admin token"
        self._tokens = {ADMIN: settings.admin_token}
        if settings.console_viewer_token:
            self._tokens[VIEWER] = settings.console_viewer_token
        key = settings.session_secret or _derived_key(settings.admin_token)
        self._key = key.encode()
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)

    def role_of(self, given: str) -> str | None:
        """The role whose token this is, or None. Every token is compared, in constant time,
        whatever matches: the time taken says nothing about which one was close."""
        found = None
        for role, token in self._tokens.items():
            if hmac.compare_digest(given.encode(), token.encode()):
                found = role
        return found

    def open(self, role: str) -> str:
        """A new session of `role` as the cookie's value."""
        return self._serializer.dumps(
            {"role": role, "csrf": secrets.token_urlsafe(24), "tf": self._fingerprint(role)}
        )

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is absent, forged, older than
        LIFETIME, or was opened with a token that is no longer configured."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=int(LIFETIME.total_seconds()))
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict):
            return None
        role, csrf, fingerprint = data.get("role"), data.get("csrf"), data.get("tf")
        if (
            role not in self._tokens
            or not isinstance(csrf, str)
            or not isinstance(fingerprint, str)
        ):
            return None
        if not hmac.compare_digest(fingerprint, self._fingerprint(role)):
            return None
        return Session(role, csrf)

    def _fingerprint(self, role: str) -> str:
        token = self._tokens[role].encode()
        return hmac.new(self._key, b"token:" + token, hashlib.sha256).hexdigest()[:32]


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())


def _derived_key(admin_token: str) -> str:
    # A key of its own rather than the token itself, so that the signing key and the bearer
    # token of /admin are different secrets; it is as hard to guess as the token.
    return hmac.new(admin_token.encode(), _SALT.encode(), hashlib.sha256).hexdigest()
