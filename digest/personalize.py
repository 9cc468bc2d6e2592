"""Per-subscriber markers: an issue is rendered once, then each copy fills in its values.

Only the template can place a marker. While an issue renders, `subscriber.NAME` in a
template becomes a marker carrying a key made for that one rendering (`Markers`); content
(titles, summaries, URLs, the editor's note) cannot know the key. Afterwards `Markers.seal`
neutralizes everything in the output that looks like a marker but has no key (so it can only
have come from content), then turns the keyed markers into the plain markers that `fill`, the
SMTP/outbox message builder and SendGrid substitutions fill in. The same goes for SendGrid's
own `<%…%>` tags, which SendGrid fills in per recipient.
"""

from __future__ import annotations

import html
import re
import secrets

# The per-subscriber values every template may use as {{ subscriber.NAME }}. click_key: who
# follows a story link, signed ([tracking] per_subscriber; render puts it in story links).
FIELDS = ("email", "name", "unsubscribe_url", "list", "web_url", "preferences_url", "click_key")

MARKER = re.compile(r"\[\[([ht]):([a-z_]+)\]\]")
# SendGrid's substitution tags (<%asm_group_unsubscribe_raw_url%>, ...): SendGrid fills them.
SENDGRID_TAG = re.compile(r"<%\s*[A-Za-z0-9_]+\s*%>")
# What content that looked like a marker or a SendGrid tag becomes (see Markers.seal); the
# text part has no escapes, so a word joiner (invisible) splits the syntax there.
_JOINER = "\u2060"
NEUTRALIZED = re.compile(
    r"\[(?:&#91;|\u2060)\[[ht]:[a-z_]+\]\]|<\u2060%\s*[A-Za-z0-9_]+\s*%>|&lt;%\s*[A-Za-z0-9_]+\s*%&gt;"
)


def html_marker(name: str) -> str:
    """The marker standing for `name` in the HTML part (filled HTML-escaped)."""
    return f"[[h:{name}]]"


def text_marker(name: str) -> str:
    """The marker standing for `name` in the text part (filled as is)."""
    return f"[[t:{name}]]"


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every marker in `template` with the subscriber's value, escaped for its part."""

    def one(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        value = values.get(name, "")
        return html.escape(value, quote=True) if kind == "h" else value

    return MARKER.sub(one, template)


class Markers:
    """The markers of one rendering: keyed while it renders, plain once sealed."""

    def __init__(self) -> None:
        self.key = secrets.token_hex(16)
        self._keyed = re.compile(r"\[\[([hts]):([a-z_]+):" + self.key + r"\]\]")

    def marker(self, kind: str, name: str) -> str:
        """The keyed marker for `name`: 'h' (HTML part), 't' (text part)."""
        return f"[[{kind}:{name}:{self.key}]]"

    def sendgrid_tag(self, name: str) -> str:
        """A keyed stand-in for SendGrid's tag `<%name%>`."""
        return f"[[s:{name}:{self.key}]]"

    def seal(self, output: str, *, html_part: bool) -> str:
        """`output` with content's look-alike markers neutralized and the keyed ones made plain."""
        if html_part:
            output = MARKER.sub(lambda m: "[&#91;" + m.group(0)[2:], output)
            output = SENDGRID_TAG.sub(lambda m: "&lt;" + m.group(0)[1:-1] + "&gt;", output)
        else:
            output = neutralize_text(output)

        def plain(match: re.Match[str]) -> str:
            kind, name = match.group(1), match.group(2)
            return f"<%{name}%>" if kind == "s" else f"[[{kind}:{name}]]"

        return self._keyed.sub(plain, output)


def neutralize_text(text: str) -> str:
    """Plain text (a subject, a text part) in which no marker or SendGrid tag can be filled."""
    text = MARKER.sub(lambda m: "[" + _JOINER + m.group(0)[1:], text)
    return SENDGRID_TAG.sub(lambda m: "<" + _JOINER + m.group(0)[1:], text)


def content_markers(*parts: str) -> list[str]:
    """The neutralized look-alike markers in rendered parts: content that tried to place one."""
    found: list[str] = []
    for part in parts:
        found.extend(
            match.group(0).replace("&#91;", "[").replace(_JOINER, "")
            for match in NEUTRALIZED.finditer(part)
        )
    return list(dict.fromkeys(found))
