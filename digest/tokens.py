"""Signed unsubscribe tokens: HMAC-SHA256 over subscriber, list and issue."""

from __future__ import annotations

import base64
import binascii
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


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64(data: bytes) -> str:
    """URL-safe base64 without padding, as every token of ours writes its parts."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    """The bytes of a `b64` part (binascii.Error or ValueError when it is none)."""
    return _unb64(text)


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()[:16]


def make_token(secret: str, subscriber_id: int, list_name: str, issue_id: int) -> str:
    """A URL-safe token that only the holder of `secret` can make."""
    return TokenMaker(secret, list_name, issue_id)(subscriber_id)


class TokenMaker:
    """`make_token` for one list and issue, with the fixed parts prepared once.

    A send makes a token per recipient: a million of them cost seconds the plain way.
    """

    def __init__(self, secret: str, list_name: str, issue_id: int) -> None:
        self._keyed = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
        self._tail = f"\x1f{list_name}\x1f{issue_id}".encode()

    def __call__(self, subscriber_id: int) -> str:
        """The token of `subscriber_id`: the same text `make_token` gives."""
        payload = b"%d" % subscriber_id + self._tail
        mac = self._keyed.copy()  # the key's set-up done once per list and issue
        mac.update(payload)
        # URL-safe base64 of both, without the padding ('=' deleted by translate)
        return (
            binascii.b2a_base64(payload, newline=False).translate(_URLSAFE, b"=")
            + b"."
            + binascii.b2a_base64(mac.digest()[:16], newline=False).translate(_URLSAFE, b"=")
        ).decode("ascii")


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


def sign_parts(secret: str, *parts: str) -> str:
    """A URL-safe token vouching for `parts` (none may hold the separator \\x1f)."""
    payload = "\x1f".join(parts).encode("utf-8")
    return (
        base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
        + "."
        + base64.urlsafe_b64encode(_sign(secret, payload)).rstrip(b"=").decode("ascii")
    )


def read_parts(secret: str, token: str) -> list[str]:
    """The parts a `sign_parts` token vouches for; TokenError for anything else."""
    bad = TokenError("this link is not valid", "use the link from the latest review copy")
    try:
        payload_part, signature_part = token.split(".")
        payload, signature = _unb64(payload_part), _unb64(signature_part)
        if not hmac.compare_digest(signature, _sign(secret, payload)):
            raise bad
        return payload.decode("utf-8").split("\x1f")
    except (ValueError, UnicodeEncodeError) as e:
        raise bad from e
