"""Who may review: keys of the router's key store (`router.keys`) holding the reviewer role.

The JSON API takes the key on every request (``Authorization: Bearer``). The web UI takes it once, at
login, and then carries a session: a cookie signed with `review.session_secret` (itsdangerous),
HttpOnly, SameSite=Strict, holding the key's id and a CSRF token that every state-changing form must
echo. The key is checked again on every request, so revoking it or its role ends its sessions.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ragyard.kit.errors import ServiceError
from router.keys import KeyStore

ROLE = "reviewer"
COOKIE = "ragyard_review"


@dataclass(frozen=True)
class Session:
    key_id: str
    csrf: str

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf, presented)


class Reviewers:
    def __init__(self, keys: KeyStore, secret: str, max_age_s: int):
        self.keys = keys
        self.max_age_s = max_age_s
        self.signer = URLSafeTimedSerializer(secret, salt="ragyard-review-session")

    def reviewer_of(self, presented: str) -> str:
        """The id of the reviewer key presented; 401 for no valid key, 403 for a key without the role."""
        key = self.keys.authenticate(presented) if presented else None
        if key is None:
            raise ServiceError(401, "Authorization: no valid API key; send 'Authorization: Bearer <key>'")
        return self.check(key.id)

    def check(self, key_id: str) -> str:
        if not self.keys.has_role(key_id, ROLE):
            raise ServiceError(
                403, f"key {key_id} may not review: create a key with `ragyard keys create --role {ROLE}`"
            )
        return key_id

    def open_session(self, key_id: str) -> tuple[Session, str]:
        """A new session for a reviewer, and its cookie value."""
        session = Session(key_id, secrets.token_urlsafe(24))
        return session, self.signer.dumps({"key": session.key_id, "csrf": session.csrf})

    def session(self, cookie: str | None) -> Session | None:
        """The session in a cookie if it is ours, unexpired, and its key still active; else None.
        A key that lost its role gets a 403 from `check`."""
        if not cookie:
            return None
        try:
            data = self.signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        key = self.keys.get(str(data.get("key", "")))
        if key is None or not key.active:
            return None
        return Session(key.id, str(data.get("csrf", "")))
