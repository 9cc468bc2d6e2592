"""Signed unsubscribe tokens: HMAC-SHA256 over subscriber, list and issue."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from digest.errors import DigestError


class TokenError(DigestError):
    """A token is forged, truncated or tampered with."""


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token vouches for."""

    subscriber_id: int
    list_name: str
    issue_id: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()[:16]


def make_token(secret: str, subscriber_id: int, list_name: str, issue_id: int) -> str:
    """A URL-safe token that only the holder of `secret` can make."""
    payload = f"{subscriber_id}\x1f{list_name}\x1f{issue_id}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def read_token(secret: str, token: str) -> TokenClaims:
    """The claims of a valid token; TokenError for anything else."""
    bad = TokenError("this unsubscribe link is not valid", "use the link from the latest email")
    try:
        payload_part, signature_part = token.split(".")
        payload, signature = _unb64(payload_part), _unb64(signature_part)
    except (ValueError, UnicodeEncodeError) as e:
        raise bad from e
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise bad
    try:
        subscriber, list_name, issue = payload.decode("utf-8").split("\x1f")
        return TokenClaims(int(subscriber), list_name, int(issue))
    except ValueError as e:
        raise bad from e
