"""Rendering: a lineup through Jinja2 templates into MJML → HTML, plus a plain-text part.

An issue is rendered once; per-subscriber values stay as markers (see digest.personalize)
until each copy is filled in at delivery or preview time.
"""

from __future__ import annotations

import importlib.resources
import re
import textwrap
import traceback
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import jinja2
import mjml
from markupsafe import Markup

from digest.errors import RenderError, TemplateError
from digest.models import Article, Lineup, RenderedIssue, Story
from digest.personalize import FIELDS, fill, html_marker, text_marker
from digest.settings import Settings

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
SUBJECT_LIMIT = 78
PREHEADER_LIMIT = 150
TEXT_WIDTH = 78
ELLIPSIS = "…"

# Characters a URL may keep as they are; everything else is percent-encoded so it cannot
# end an attribute or smuggle markup ('%' stays so existing escapes are not doubled).
_URL_SAFE = "/:?#[]@!$&()*+,;=%~-._"
_WHITESPACE = re.compile(r"\s+")
# Bidirectional overrides can make a title read differently from what it says.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Link:
    """A piece of text and, when its URL is safe to follow, that URL."""

    text: str
    url: str | None


@dataclass(frozen=True)
class StoryView:
    """One story as the templates see it: plain, cleaned text and only safe URLs."""

    number: int
    title: str
    url: str | None
    source: str
    date: str  # e.g. "27 Nov 2025", or "" when unknown
    summary: str
    image: str | None
    also: list[Link] = field(default_factory=list)


class SubscriberMarkers:
    """`{{ subscriber.NAME }}` in a template: the marker that personalize.fill replaces later."""

    def __init__(self, html: bool) -> None:
        self._html = html

    def __getattr__(self, name: str) -> str:
        if name not in FIELDS:
            # Jinja turns the AttributeError into an undefined value, which StrictUndefined reports.
            raise AttributeError(name)
        return Markup(html_marker(name)) if self._html else text_marker(name)


def template_environment(settings: Settings) -> jinja2.Environment:
    """A Jinja2 environment that looks in the user's templates folder first, then the built-ins."""
    loaders: list[jinja2.BaseLoader] = []
    if settings.templates is not None:
        folder = settings.resolve(settings.templates)
        if not folder.is_dir():
            raise TemplateError(
                f"templates folder {folder} does not exist",
                "set [newsletter] templates to an existing folder, or remove it for the built-ins",
            )
        loaders.append(jinja2.FileSystemLoader(str(folder)))
    loaders.append(_builtin_loader())
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap
    return env


def render_issue(
    lineup: Lineup, settings: Settings, number: int, *, now: datetime | None = None
) -> RenderedIssue:
    """Render the issue once for all subscribers: subject, preheader, HTML and text parts."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local_now = now.astimezone(settings.tz)
    stories = [_story_view(i, story, settings) for i, story in enumerate(lineup.stories, 1)]
    subject = make_subject(settings.name, number, stories[0].title if stories else None)
    preheader = make_preheader([s.title for s in stories])
    context: dict[str, Any] = {
        "newsletter": {
            "name": _clean(settings.name),
            "language": settings.language,
            "base_url": safe_url(settings.base_url),
            "postal_address": settings.postal_address.strip(),
            "postal_lines": [
                line.strip() for line in settings.postal_address.splitlines() if line.strip()
            ],
        },
        "issue": {
            "number": number,
            "subject": subject,
            "preheader": preheader,
            "date": local_now,
            "date_label": long_date(local_now),
            "window": lineup.window.label,
        },
        "stories": stories,
    }
    env = template_environment(settings)
    html_context = {**context, "subscriber": SubscriberMarkers(html=True)}
    text_context = {**context, "subscriber": SubscriberMarkers(html=False)}
    source = _render_template(env, HTML_TEMPLATE, html_context)
    text = _render_template(env, TEXT_TEMPLATE, text_context)
    return RenderedIssue(subject=subject, preheader=preheader, html=to_html(source), text=text)


def render_preview(rendered: RenderedIssue, values: dict[str, str]) -> tuple[str, str]:
    """The (html, text) one subscriber would receive: the markers filled with `values`."""
    return fill(rendered.html, values), fill(rendered.text, values)


def to_html(mjml_source: str) -> str:
    """Convert MJML to HTML, turning the converter's complaints into a RenderError."""
    try:
        # fonts={}: no web-font <link>s, so opening the email does not call out to Google.
        html: str = mjml.mjml2html(mjml_source, fonts={})
    except ValueError as e:
        raise RenderError(
            f"{HTML_TEMPLATE}: the MJML it produced cannot be converted: {e}",
            "check that every <mj-*> tag in the template is known and closed",
        ) from e
    return html


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL (percent-encoded where needed), else None."""
    if not url:
        return None
    url = url.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    try:
        netloc = parts.netloc.encode("idna").decode("ascii") if not parts.netloc.isascii() else (
            parts.netloc
        )
    except UnicodeError:
        return None
    if any(c in netloc for c in "\"'<>\\ `"):
        return None
    return urlunsplit(
        (
            parts.scheme.lower(),
            netloc,
            quote(parts.path, safe=_URL_SAFE),
            quote(parts.query, safe=_URL_SAFE),
            quote(parts.fragment, safe=_URL_SAFE),
        )
    )


def make_subject(name: str, number: int, lead_title: str | None) -> str:
    """'<name> #<number>: <lead title>', trimmed at a word to 78 characters where possible."""
    head = f"{_clean(name)} #{number}"
    if not lead_title:
        return head
    prefix = f"{head}: "
    room = SUBJECT_LIMIT - len(prefix)
    if room < 12:  # too little room for a meaningful title; keep the name and number alone
        return head
    return prefix + shorten(lead_title, room)


def make_preheader(titles: list[str]) -> str:
    """The first stories' titles joined with ' · ', at most 150 characters."""
    parts: list[str] = []
    for title in titles:
        candidate = " · ".join([*parts, title])
        if len(candidate) > PREHEADER_LIMIT:
            break
        parts.append(title)
    if not parts and titles:
        return shorten(titles[0], PREHEADER_LIMIT)
    return " · ".join(parts)


def shorten(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at a word boundary and ended with an ellipsis."""
    text = _clean(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS) + 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    else:  # one long word: cutting it is unavoidable, the ellipsis shows it
        cut = cut[: limit - len(ELLIPSIS)]
    return cut.rstrip(" ,;:.-–—·") + ELLIPSIS


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Jinja filter: wrap plain text at `width` columns without breaking words or URLs."""
    return textwrap.fill(
        _clean(str(text)),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def long_date(moment: datetime) -> str:
    """'27 November 2025'."""
    return f"{moment.day} {moment.strftime('%B %Y')}"


def short_date(moment: datetime) -> str:
    """'27 Nov 2025'."""
    return f"{moment.day} {moment.strftime('%b %Y')}"


def _story_view(number: int, story: Story, settings: Settings) -> StoryView:
    article = story.article
    url = safe_url(article.url)
    published = article.published.astimezone(settings.tz) if article.published else None
    return StoryView(
        number=number,
        title=_title(article),
        url=url,
        source=_clean(article.source or "") or _host(url),
        date=short_date(published) if published else "",
        summary=_clean(story.summary),
        image=safe_url(article.image),
        also=[_also_link(other) for other in story.also],
    )


def _also_link(article: Article) -> Link:
    url = safe_url(article.url)
    return Link(text=_clean(article.source or "") or _host(url) or _title(article), url=url)


def _title(article: Article) -> str:
    return _clean(article.title) or "(untitled)"


def _host(url: str | None) -> str:
    host = urlsplit(url).hostname if url else None
    return (host or "").removeprefix("www.")


def _clean(text: str) -> str:
    """One line of printable text: control characters dropped, whitespace runs collapsed."""
    kept = "".join(
        c if c.isspace() or (unicodedata.category(c) != "Cc" and c not in _BIDI_CONTROLS) else ""
        for c in text
    )
    return _WHITESPACE.sub(" ", kept).strip()


def _autoescape(name: str | None) -> bool:
    # Only plain-text templates render unescaped; anything else (MJML, HTML, unknown) is escaped.
    return not (name or "").removesuffix(".j2").endswith(".txt")


def _builtin_loader() -> jinja2.BaseLoader:
    root = importlib.resources.files("digest.templates")
    if isinstance(root, Path):
        return jinja2.FileSystemLoader(str(root))

    def load(name: str) -> str | None:  # templates inside a zip: no file path to watch
        item = root.joinpath(name)
        return item.read_text(encoding="utf-8") if item.is_file() else None

    return jinja2.FunctionLoader(load)


def _render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        template = env.get_template(name)
        return template.render(context)
    except jinja2.TemplateSyntaxError as e:
        where = f"{e.filename or e.name or name}, line {e.lineno}"
        raise TemplateError(
            f"{where}: template syntax error: {e.message}", "fix the Jinja2 syntax at that line"
        ) from e
    except jinja2.TemplateNotFound as e:
        raise TemplateError(
            f"template {e.name} not found (needed by {name})",
            "add it to your templates folder or remove the reference to it",
        ) from e
    except jinja2.UndefinedError as e:
        raise TemplateError(
            f"{_template_position(e, name)}: {e.message}",
            "use only the variables the templates receive: newsletter, issue, stories, subscriber "
            f"(subscriber fields: {', '.join(FIELDS)})",
        ) from e
    except jinja2.TemplateError as e:
        raise TemplateError(
            f"{_template_position(e, name)}: {e}", "fix the template at that line"
        ) from e
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as e:
        # An expression in the template failed on the data it was given.
        raise TemplateError(
            f"{_template_position(e, name)}: {type(e).__name__}: {e}",
            "fix the expression at that line of the template",
        ) from e


def _template_position(error: BaseException, name: str) -> str:
    """'path/to/template, line N' from the traceback Jinja rewrites to point into templates."""
    stack = traceback.extract_tb(error.__traceback__)
    frames = [f for f in stack if not f.filename.endswith(".py")]
    if not frames:
        return name
    frame = frames[-1]
    return f"{frame.filename}, line {frame.lineno}"
