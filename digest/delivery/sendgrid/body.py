"""mail/send request bodies, written as JSON text: the parts an issue's batches share, and
each batch's personalizations.

Not the library's Mail helper objects: a batch of 1000 personalizations is one string format
per recipient, a fraction of the helpers' cost, and the library sends the text as it is.
"""

from __future__ import annotations

import json
import re
from html import escape as _escape
from json.encoder import encode_basestring_ascii as _json_str
from typing import TYPE_CHECKING, Any

from digest import personalize
from digest.delivery import Recipient
from digest.delivery.message import EnvelopeMaker, EnvelopeTemplate
from digest.models import Issue
from digest.settings import Settings

if TYPE_CHECKING:
    from digest.delivery.sendgrid.schedule import Schedule

MAX_BODY = 30 * 1000 * 1000 - 64 * 1024  # SendGrid refuses 30 MB and more; keep a margin
MARKER = personalize.MARKER  # one pattern for every sender
_PERSONALIZATION_FIELD = re.compile(r"^personalizations\.(\d+)\b")


def shared_fields(issue: Issue, settings: Settings, schedule: Schedule | None) -> dict[str, Any]:
    """Everything in a mail/send body that is the same for every batch of `issue`."""
    sender: dict[str, str] = {"email": settings.from_email}
    if settings.sender_name:
        sender["name"] = settings.sender_name
    fields: dict[str, Any] = {"from": sender}
    if settings.reply_to:
        fields["reply_to"] = {"email": settings.reply_to}
    fields["subject"] = issue.rendered.subject
    fields["content"] = [
        {"type": kind, "value": value}
        for kind, value in (("text/plain", issue.rendered.text), ("text/html", issue.rendered.html))
        if value
    ]
    fields["categories"] = ["digest", f"issue-{issue.label}"[:255]]
    if settings.sendgrid_asm_group_id:
        fields["asm"] = {"group_id": settings.sendgrid_asm_group_id}
    if settings.sendgrid_sandbox:
        fields["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if schedule is not None:
        fields["send_at"] = schedule.send_at
        fields["batch_id"] = schedule.batch_id
    return fields


class Personalizations:
    """Writes a batch's personalizations as JSON text: To, marker values, headers, trace ids.

    `fills`: the markers the content uses, as (marker as JSON, value name, HTML-escaped);
    each gets its value (empty when the envelope has none), as `personalize.fill` fills it.
    The markers and their order are fixed for an issue, so each recipient's substitutions are
    one %-format of the few values, each JSON-encoded once: a batch of 1000 is a few ms.
    """

    def __init__(self, fills: list[tuple[str, str, bool]]) -> None:
        self._fills = fills
        self._compiled: tuple[EnvelopeTemplate, str, str, tuple[bool, bool, bool, bool]] | None = (
            None
        )

    def rows_json(self, rows: list[Recipient], envelopes: EnvelopeMaker) -> str:
        """The personalizations (comma-separated) of the envelopes `envelopes` makes for
        `rows`, written from its template: JSON and HTML escaping act character by
        character, so a slot's encoding can be joined to the encoded fixed text around it.
        (tests/reference.py writes them from the envelopes, the plain way, to check this.)
        """
        if self._compiled is None or self._compiled[0] is not envelopes.template:
            self._compiled = (envelopes.template, *self._compile(envelopes.template))
        _, named, unnamed, needs = self._compiled
        escaped_email, escaped_name, tokens, keys = needs
        token, reader = envelopes.token, envelopes.clicks
        out = []
        for sid, email, name, _ in rows:
            e = _json_str(email)[1:-1]
            eh = n = nh = t = c = ""
            if escaped_email:
                eh = _json_str(_escape(email))[1:-1] if _html_special(email) else e
            if name:
                n = _json_str(name)[1:-1]
                if escaped_name:
                    nh = _json_str(_escape(name))[1:-1] if _html_special(name) else n
            if tokens:
                t = token(sid)
            if keys and reader is not None:
                c = reader(sid)
            out.append((named if name else unnamed).format(e, eh, n, nh, t, sid, c))
        return ",".join(out)

    def _compile(
        self, template: EnvelopeTemplate
    ) -> tuple[str, str, tuple[bool, bool, bool, bool]]:
        """str.format patterns of one personalization, with and without a name; and which of
        the escaped email, escaped name, token and click key they use.

        Fields: {0} email, {1} email HTML-escaped, {2} name, {3} name HTML-escaped, {4} token,
        {5} subscriber id, {6} click key; each as the inside of a JSON string.
        """
        fields = {
            ("", False): "",
            ("", True): "",
            ("email", False): "{0}",
            ("email", True): "{1}",
            ("name", False): "{2}",
            ("name", True): "{3}",
            ("token", False): "{4}",
            ("token", True): "{4}",
            ("click", False): "{6}",
            ("click", True): "{6}",
        }

        def fixed(text: str) -> str:
            return _json_str(text)[1:-1].replace("{", "{{").replace("}", "}}")

        def string(spec: tuple[str, str, str], escaped: bool) -> str:
            before, slot, after = spec
            if escaped:
                before, after = _escape(before), _escape(after)
            return f'"{fixed(before)}{fields[(slot, escaped)]}{fixed(after)}"'

        subs = ""
        if self._fills:
            subs = (
                ',"substitutions":{{'
                + ",".join(
                    key.replace("{", "{{").replace("}", "}}")
                    + ":"
                    + string(template.values.get(name, ("", "", "")), escaped)
                    for key, name, escaped in self._fills
                )
                + "}}"
            )
        headers = ""
        if template.headers:
            headers = (
                ',"headers":{{'
                + ",".join(
                    f'"{fixed(name)}":' + string(spec, False)
                    for name, spec in template.headers.items()
                )
                + "}}"
            )
        rest = f'{subs}{headers},"custom_args":{{{{"subscriber":"{{5}}"}}}}}}}}'
        named = '{{"to":[{{"email":"{0}","name":"{2}"}}]' + rest
        unnamed = '{{"to":[{{"email":"{0}"}}]' + rest
        used = named + unnamed
        return named, unnamed, ("{1}" in used, "{3}" in used, "{4}" in used, "{6}" in used)


def _html_special(text: str) -> bool:
    """Whether HTML escaping changes `text` (five `in`s are a third of one regex search)."""
    return "&" in text or "<" in text or ">" in text or '"' in text or "'" in text


def api_error(body: bytes | str | None) -> str:
    """SendGrid's error messages in one line, or the raw answer when it is not its JSON shape."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(text)["errors"]
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors
        ]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:500] or "(no details)"
    return "; ".join(parts)[:2000] or "(no details)"


def refused_recipients(body: bytes) -> dict[int, str]:
    """Index → reason, when every error of a 400 names one personalization; else {}."""
    try:
        errors = json.loads(body)["errors"]
        found: dict[int, str] = {}
        for e in errors:
            match = _PERSONALIZATION_FIELD.match(str(e.get("field") or ""))
            if match is None:
                return {}
            found[int(match.group(1))] = f"{e['field']}: {e['message']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    return found
