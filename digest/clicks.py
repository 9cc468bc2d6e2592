"""Clicks per story: signed redirect links (`[tracking] clicks`) and what they vouch for.

A story link becomes `BASE_URL/c/TOKEN`, the token signing the issue (its label), the
story's position as shown and the URL, and nobody's identity: every reader of an issue gets
the same link. `digest serve` redirects only to the URL signed in the token.

With `[tracking] per_subscriber`, each copy's links add `?r=KEY`: the reader's click key,
signed apart (subscriber, list, issue; a key of its own, so it unsubscribes nobody), filled
in per recipient like the unsubscribe link. Clicks then count by subscriber ("s" + id, as
SendGrid's click events do).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from digest.errors import DigestError
from digest.tokens import TokenError, TokenMaker, b64, read_token, unb64

if TYPE_CHECKING:
    from digest.store import Store, StoryClicks

MAX_TOKEN = 6000  # characters: a story URL of a few kilobytes, base64, and the signature


@dataclass(frozen=True)
class ClickClaims:
    """What a valid click token vouches for."""

    issue_label: str
    position: int
    url: str


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(f"click\x1f{secret}".encode(), payload, hashlib.sha256).digest()[:16]


def click_token(secret: str, issue_label: str, position: int, url: str) -> str:
    """The token of one story link of one issue."""
    payload = f"{issue_label}\x1f{position}\x1f{url}".encode()
    return f"{b64(payload)}.{b64(_mac(secret, payload))}"


def read_click_token(secret: str, token: str) -> ClickClaims | None:
    """The claims of a valid token, or None (forged, cut, altered, or too long)."""
    if len(token) > MAX_TOKEN:
        return None
    try:
        payload_part, mac_part = token.split(".")
        payload, mac = unb64(payload_part), unb64(mac_part)
    except (ValueError, UnicodeEncodeError, binascii.Error):
        return None
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        label, position, url = payload.decode("utf-8").split("\x1f")
        return ClickClaims(label, int(position), url)
    except ValueError:
        return None


def tracked_url(base_url: str, secret: str, issue_label: str, position: int, url: str) -> str:
    """The link that counts a click on a story, then leads to `url`."""
    return f"{base_url.rstrip('/')}/c/{click_token(secret, issue_label, position, url)}"


def _reader_secret(secret: str) -> str:
    return f"reader\x1f{secret}"


def reader_keys(secret: str, list_name: str, issue_id: int) -> TokenMaker:
    """The click key of each subscriber (by id) for one issue and list."""
    return TokenMaker(_reader_secret(secret), list_name, issue_id)


def reader_of(secret: str, key: str) -> int | None:
    """The subscriber id a valid click key vouches for, else None."""
    if not key or len(key) > 200:
        return None
    try:
        return read_token(_reader_secret(secret), key).subscriber_id
    except TokenError:
        return None


def visitor(secret: str, ip: str, agent: str) -> str:
    """Who clicked, for unique clicks, without keeping their IP: a keyed hash of both."""
    key = f"visitor\x1f{secret}".encode()
    return hmac.new(key, f"{ip}\x1f{agent}".encode(), hashlib.sha256).hexdigest()[:32]


def issue_clicks(store: Store, issue: str) -> tuple[str, list[StoryClicks]]:
    """The label of an issue (by id or label) and its stories' clicks; DigestError if none."""
    found = store.issue_by_label(issue)
    issue_id = found.id if found is not None else int(issue) if issue.isdigit() else 0
    stories = store.story_clicks(issue_id)
    label = store.issue_label_by_id(issue_id)
    if stories is None or label is None:
        raise DigestError(
            f"--issue: no issue {issue!r}",
            "give an issue's id or label as 'digest status' shows it",
        )
    return label, stories
