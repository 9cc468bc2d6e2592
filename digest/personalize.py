"""Per-subscriber markers: an issue is rendered once, then each copy fills in its values."""

from __future__ import annotations

import html
import re

# The per-subscriber values every template may use as {{ subscriber.NAME }}.
FIELDS = ("email", "name", "unsubscribe_url", "list", "web_url", "preferences_url")

_MARKER = re.compile(r"\[\[([ht]):([a-z_]+)\]\]")


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

    return _MARKER.sub(one, template)


def substitutions(values: dict[str, str]) -> dict[str, str]:
    """The same filling as SendGrid substitutions: marker → value, escaped for its part."""
    subs: dict[str, str] = {}
    for name, value in values.items():
        subs[html_marker(name)] = html.escape(value, quote=True)
        subs[text_marker(name)] = value
    return subs
