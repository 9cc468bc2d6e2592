"""Rendering: a lineup through Jinja2 templates into MJML → HTML, plus a plain-text part.

An issue is rendered once; per-subscriber values stay as markers (see digest.personalize)
until each copy is filled in at delivery or preview time.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import textwrap
import traceback
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import jinja2
import jinja2.sandbox
import mjml
import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from digest.errors import DigestError, RenderError, SettingsError, TemplateError
from digest.models import Article, Lineup, RenderedIssue, Story
from digest.personalize import FIELDS, Markers, fill, neutralize_text
from digest.settings import Settings

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
SUBJECT_LIMIT = 78
PREHEADER_LIMIT = 150
# Reading speed behind "N min read"; texts shorter than READING_MIN_WORDS are teasers whose
# length says nothing about the article's, so they get no reading time.
WORDS_PER_MINUTE = 230
READING_MIN_WORDS = 100
IMAGE_POLICIES = ("lead", "all", "none")
# The variables of the [newsletter] subject and preheader templates.
LINE_VARIABLES = ("name", "number", "lead", "headlines", "date", "count", "week")
# A source name longer than this is cut (at a word, with an ellipsis) in calls to action.
SOURCE_LIMIT = 40
TEXT_WIDTH = 78
ELLIPSIS = "…"

# Characters a URL may keep as they are; everything else is percent-encoded so it cannot
# end an attribute or smuggle markup ('%' stays so existing escapes are not doubled).
_URL_SAFE = "/:?#[]@!$&()*+,;=%~-._"
_WHITESPACE = re.compile(r"\s+")
# Control characters that are not whitespace, and the bidirectional overrides that can make
# a title read differently from what it says: dropped from every piece of article text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]")
_KEYED_MARKER = re.compile(r"\[\[([hts]):([a-z_]+):([0-9a-f]+)\]\]")  # see personalize.Markers
_STAND_IN = re.compile("\x01\x02*")
_COLOR = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?")
_FONT = re.compile(r"[A-Za-z0-9 ,'\"-]+")
SYSTEM_FONTS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
# What an editor's note may contain once rendered from Markdown (raw HTML is off anyway).
_NOTE_TAGS = {"p", "a", "em", "strong", "ul", "ol", "li", "br", "code", "blockquote"}
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False})
_environments: dict[Path | None, jinja2.Environment] = {}


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
    section: str = ""
    reading: str = ""  # e.g. "4 min read", or "" when the text is too short to tell
    image_alt: str = ""  # the image's own alt text or caption, else "Photo: SOURCE"
    image_width: int | None = None  # the image's own width in pixels, when known

    @property
    def anchor(self) -> str:
        """The id of the story's heading, where the "In this issue" links land."""
        return f"story-{self.number}"

    @property
    def cta(self) -> str:
        """The story's one call to action: short, naming where it leads."""
        return f"Read at {self.source}" if self.source else "Read the story"


# Story views by (id of the story, with its image), for renderings of the same stories.
StoryViews = dict[tuple[int, bool], StoryView]


@dataclass(frozen=True)
class Group:
    """Stories under one heading: a section of the settings, or the untitled rest."""

    title: str
    stories: list[StoryView]


@dataclass(frozen=True)
class Note:
    """The editor's note: sanitized HTML for the email, wrapped plain text for the text part."""

    html: Markup
    text: str


@dataclass(frozen=True)
class Brand:
    """The newsletter's look, validated: accent colour, logo and font."""

    accent: str
    logo: str | None
    font: str


class SubscriberMarkers:
    """`{{ subscriber.NAME }}` in a template: the marker that personalize.fill replaces later.

    The marker carries this rendering's key (see personalize.Markers), which content lacks.
    """

    def __init__(self, markers: Markers, html: bool) -> None:
        self._markers = markers
        self._html = html

    def __getattr__(self, name: str) -> str:
        if name not in FIELDS:
            # Jinja turns the AttributeError into an undefined value, which StrictUndefined reports.
            raise AttributeError(name)
        marker = self._markers.marker("h" if self._html else "t", name)
        return Markup(marker) if self._html else marker


def template_environment(settings: Settings) -> jinja2.Environment:
    """A Jinja2 environment that looks in the user's templates folder first, then the built-ins.

    One environment per folder is kept, so templates compile once and are reloaded only when
    their file changes.
    """
    folder = settings.resolve(settings.templates) if settings.templates is not None else None
    if folder is not None and not folder.is_dir():
        raise TemplateError(
            f"templates folder {folder} does not exist",
            "set [newsletter] templates to an existing folder, or remove it for the built-ins",
        )
    env = _environments.get(folder)
    if env is not None:
        return env
    loaders: list[jinja2.BaseLoader] = []
    if folder is not None:
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
    _environments[folder] = env
    return env


# SendGrid's own unsubscribe-group links, written literally into the templates when
# [sendgrid] asm_group_id is set: SendGrid puts each recipient's URL in their place. They are
# not marker values, so no escaping can turn them into text SendGrid does not recognise.
ASM_UNSUBSCRIBE = "<%asm_group_unsubscribe_raw_url%>"
ASM_PREFERENCES = "<%asm_preferences_raw_url%>"


def uses_asm(settings: Settings) -> bool:
    """Whether the footer links to SendGrid's unsubscribe group instead of our own pages."""
    return settings.backend == "sendgrid" and settings.sendgrid_asm_group_id > 0


def render_issue(
    lineup: Lineup,
    settings: Settings,
    number: int,
    *,
    now: datetime | None = None,
    click_secret: str = "",
    views: StoryViews | None = None,
) -> RenderedIssue:
    """Render the issue once for all subscribers: subject, preheader, HTML and text parts.

    With [tracking] clicks and `click_secret`, story links lead through BASE_URL/c/TOKEN.
    `views`: the story views made by earlier renderings of the same stories (the variants
    of a personalized issue), kept and reused.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local_now = now.astimezone(settings.tz)
    images = image_policy(settings)
    views = {} if views is None else views
    stories = []
    for i, story in enumerate(lineup.stories, 1):
        with_image = images == "all" or (images == "lead" and i == 1)
        view = views.get((id(story), with_image))
        if view is None:  # numbered below, as shown
            view = views[id(story), with_image] = _story_view(i, story, settings, with_image)
        stories.append(view)
    # Sections move stories away from their rank: number them as the reader meets them (the
    # lead, then section by section; the "In this issue" order too).
    stories, groups = number_as_shown(stories[:1], group_stories(stories[1:], settings.sections))
    tracks_clicks = settings.track_clicks and bool(click_secret) and bool(settings.base_url)
    markers = Markers()
    text_stories, text_groups = stories, groups
    if tracks_clicks:
        label = lineup.window.label
        # Per subscriber: each copy's links carry its reader's signed key (a marker per part).
        who = settings.track_per_subscriber
        html_key = markers.marker("h", "click_key") if who else ""
        text_key = markers.marker("t", "click_key") if who else ""
        text_stories, text_groups = _tracked(
            stories, groups, settings, click_secret, label, text_key
        )
        stories, groups = _tracked(stories, groups, settings, click_secret, label, html_key)
    brand = brand_of(settings)
    note = render_note(settings.note, brand.accent) if settings.note.strip() else None
    line_values: dict[str, Any] = {
        "name": _clean(settings.name),
        "number": number,
        "lead": stories[0].title if stories else "",
        "headlines": [s.title for s in stories],
        "date": long_date(local_now),
        "count": len(stories),
        "week": lineup.window.label,
    }
    if settings.subject.strip():
        subject = render_line(settings.subject, line_values, "subject")
    else:
        subject = make_subject(settings.name, number, stories[0].title if stories else None)
    if settings.preheader.strip():
        preheader = shorten(
            render_line(settings.preheader, line_values, "preheader"), PREHEADER_LIMIT
        )
    else:
        preheader = default_preheader(subject, stories)
    # Subject and preheader: no marker in them may ever be filled (titles come from content).
    subject = neutralize_text(subject)
    preheader = neutralize_text(preheader)
    context: dict[str, Any] = {
        "newsletter": {
            "name": _clean(settings.name),
            "language": settings.language,
            "base_url": safe_url(settings.base_url),
            # SendGrid's group links (see ASM_UNSUBSCRIBE) instead of our own, or None.
            "asm": {
                "unsubscribe_url": markers.sendgrid_tag(ASM_UNSUBSCRIBE[2:-2]),
                "preferences_url": markers.sendgrid_tag(ASM_PREFERENCES[2:-2]),
            }
            if uses_asm(settings)
            else None,
            "postal_address": settings.postal_address.strip(),
            "postal_lines": [
                line.strip() for line in settings.postal_address.splitlines() if line.strip()
            ],
            "tracks_clicks": tracks_clicks,
            "tracks_readers": tracks_clicks and settings.track_per_subscriber,
        },
        "brand": brand,
        "note": note,
        "issue": {
            "number": number,
            "subject": subject,
            "preheader": preheader,
            "date": local_now,
            "date_label": long_date(local_now),
            "window": lineup.window.label,
        },
        "stories": stories,
        "lead": stories[0] if stories else None,
        "groups": groups,
    }
    env = template_environment(settings)
    html_context = {**context, "subscriber": SubscriberMarkers(markers, html=True)}
    text_context = {
        **context,
        "stories": text_stories,
        "lead": text_stories[0] if text_stories else None,
        "groups": text_groups,
        "subscriber": SubscriberMarkers(markers, html=False),
    }
    source = _render_template(env, HTML_TEMPLATE, html_context)
    text = _render_template(env, TEXT_TEMPLATE, text_context)
    html = markers.seal(mime_body(to_html(source)), html_part=True)
    text = markers.seal(mime_body(text), html_part=False)
    return RenderedIssue(subject=subject, preheader=preheader, html=html, text=text)


def image_policy(settings: Settings) -> str:
    """[brand] images, checked: which stories show their image."""
    policy = settings.images.strip().lower()
    if policy not in IMAGE_POLICIES:
        raise SettingsError(
            f"[brand] images must be one of {', '.join(IMAGE_POLICIES)}, got {settings.images!r}",
            'set [brand] images (or DIGEST_IMAGES) to "lead" (the lead story\'s image only), '
            '"all" or "none"',
        )
    return policy


_line_environment = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False
)


def render_line(template: str, values: dict[str, Any], what: str) -> str:
    """A subject or preheader template (sandboxed Jinja) rendered into one line of text."""
    try:
        line = _line_environment.from_string(template).render(values)
    except jinja2.TemplateError as e:
        raise SettingsError(
            f"[newsletter] {what} {template!r}: {e}",
            f"use Jinja syntax with the variables {', '.join(LINE_VARIABLES)}, "
            f'e.g. "{{{{ name }}}} #{{{{ number }}}}: {{{{ lead }}}}"',
        ) from e
    except (ArithmeticError, LookupError, TypeError, ValueError) as e:
        raise SettingsError(
            f"[newsletter] {what} {template!r}: {type(e).__name__}: {e}",
            f"fix the expression; the variables are {', '.join(LINE_VARIABLES)}",
        ) from e
    return _clean(line)


def default_preheader(subject: str, stories: list[StoryView]) -> str:
    """The headlines the subject does not name, joined with ' · ' within 150 characters;
    with none left, the lead's summary. Never the subject again."""
    named = _clean(subject).casefold()
    titles = [s.title for s in stories if s.title[:24].casefold() not in named]
    if titles:
        return make_preheader(titles)
    return shorten(stories[0].summary, PREHEADER_LIMIT) if stories else ""


def reading_time(text: str) -> str:
    """'4 min read' for an article's text (230 words a minute), '' for a teaser."""
    words = len(text.split())
    if words < READING_MIN_WORDS:
        return ""
    return f"{max(1, round(words / WORDS_PER_MINUTE))} min read"


def render_preview(rendered: RenderedIssue, values: dict[str, str]) -> tuple[str, str]:
    """The (html, text) one subscriber would receive: the markers filled with `values`.

    These are exactly the decoded bodies of the subscriber's MIME parts.
    """
    clean = {name: mime_body(value, end=False) for name, value in values.items()}
    return fill(rendered.html, clean), fill(rendered.text, clean)


def mime_body(text: str, *, end: bool = True) -> str:
    """`text` with the line endings a MIME text part has once decoded: '\\n', and one at the end."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if end and not text.endswith("\n"):
        text += "\n"
    return text


def brand_of(settings: Settings) -> Brand:
    """The brand settings, checked: they go into CSS and attributes of every issue."""
    accent = settings.accent_color.strip()
    if not _COLOR.fullmatch(accent):
        raise SettingsError(
            f"[brand] accent_color must be a hex colour like #2f5bea, got {accent!r}",
            "set [brand] accent_color (or DIGEST_ACCENT_COLOR) to #rgb or #rrggbb",
        )
    font = settings.font.strip()
    if font and not _FONT.fullmatch(font):
        raise SettingsError(
            f"[brand] font must be a CSS font-family list, got {font!r}",
            "set [brand] font to letters, digits, spaces, commas, hyphens and quotes, "
            'e.g. "Georgia, serif"',
        )
    logo = safe_url(settings.logo_url) if settings.logo_url.strip() else None
    if settings.logo_url.strip() and logo is None:
        raise SettingsError(
            f"[brand] logo_url must be an absolute https:// URL, got {settings.logo_url!r}",
            "set [brand] logo_url to the public address of the logo image, or leave it empty",
        )
    return Brand(accent=accent, logo=logo, font=font or SYSTEM_FONTS)


def render_note(markdown: str, accent: str = "#2f5bea") -> Note:
    """The editor's note from Markdown: raw HTML off, then sanitized; and as plain paragraphs."""
    html = nh3.clean(
        _markdown.render(markdown),
        tags=_NOTE_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        set_tag_attribute_values={"a": {"style": f"color:{accent};"}},
    )
    blocks: list[str] = []
    for paragraph in _note_paragraphs(_markdown.parse(markdown)):
        if paragraph.startswith("- "):
            item = wrap(paragraph[2:], indent="    ", first="  - ")
            if blocks and blocks[-1].startswith("  - "):
                blocks[-1] += "\n" + item  # items of one list stay together
                continue
            blocks.append(item)
        else:
            blocks.append(wrap(paragraph))
    return Note(html=Markup(html), text="\n\n".join(blocks))


def read_note(path: Path) -> str:
    """The Markdown of an editor's note file (--note FILE.md)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DigestError(
            f"{path}: cannot read the editor's note: {e}",
            "pass --note a readable UTF-8 Markdown file",
        ) from e


class _Sectioned(Protocol):
    @property
    def section(self) -> str: ...


S = TypeVar("S", bound=_Sectioned)


def group_stories(stories: list[StoryView], sections: tuple[str, ...]) -> list[Group]:
    """The stories under the settings' section headings, in their order, then the rest.

    Without sections: one untitled group. A story goes under the first section whose name
    matches its own section (case-insensitively); unmatched ones go under "More stories".
    """
    return [Group(title, items) for title, items in _grouped(stories, sections)]


def _grouped(stories: list[S], sections: tuple[str, ...]) -> list[tuple[str, list[S]]]:
    """`group_stories` for anything with a `section`: (heading, stories) pairs."""
    if not sections:
        return [("", stories)] if stories else []
    wanted = {name.strip().casefold(): name.strip() for name in reversed(sections)}
    by_title: dict[str, list[S]] = {name.strip(): [] for name in sections}
    rest: list[S] = []
    for story in stories:
        title = wanted.get(story.section.casefold())
        (by_title[title] if title else rest).append(story)
    groups = [(_clean(title), items) for title, items in by_title.items() if items]
    if rest:
        groups.append(("More stories", rest))
    return groups


@dataclass(frozen=True)
class _Placed:
    rank: int
    section: str


def shown_positions(lineup: Lineup, sections: tuple[str, ...]) -> list[int]:
    """The number each story of `lineup` (in rank order) is shown under in the issue: the
    lead first, then section by section (as `number_as_shown` numbers them)."""
    placed = [
        _Placed(rank, _clean(s.article.section or "")) for rank, s in enumerate(lineup.stories)
    ]
    order = placed[:1] + [p for _, items in _grouped(placed[1:], sections) for p in items]
    shown = [0] * len(placed)
    for number, item in enumerate(order, 1):
        shown[item.rank] = number
    return shown


def number_as_shown(
    lead: list[StoryView], groups: list[Group]
) -> tuple[list[StoryView], list[Group]]:
    """The stories numbered 1, 2, 3… in the order a reader meets them: the lead, then each
    group's in turn (sections move stories away from their rank order). Returns the stories in
    that order and the groups holding the renumbered ones."""
    shown: list[StoryView] = []
    numbered = []
    for story in lead:
        shown.append(replace(story, number=len(shown) + 1))
    for group in groups:
        items = []
        for story in group.stories:
            items.append(replace(story, number=len(shown) + 1))
            shown.append(items[-1])
        numbered.append(Group(group.title, items))
    return shown, numbered


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
        netloc = (
            parts.netloc.encode("idna").decode("ascii")
            if not parts.netloc.isascii()
            else (parts.netloc)
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
    """Jinja filter: wrap plain text at `width` columns without breaking words or URLs.

    A subscriber marker counts as wide as the plain marker it becomes (not its keyed form).
    """
    return _wrap(str(text), width, indent, first)


@functools.lru_cache(maxsize=4096)  # a personalized issue wraps each story in many variants
def _wrap(text: str, width: int, indent: str, first: str | None) -> str:
    keyed: list[str] = []

    def stand_in(match: re.Match[str]) -> str:
        keyed.append(match.group(0))
        return "\x01" + "\x02" * (len(match.group(0)) - len(match.group(3)) - 2)

    # _clean has dropped every \x01 and \x02 of the text, so the stand-ins are only ours.
    wrapped = textwrap.fill(
        _KEYED_MARKER.sub(stand_in, _clean(text)),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    restore = iter(keyed)
    return _STAND_IN.sub(lambda _: next(restore), wrapped)


def long_date(moment: datetime) -> str:
    """'27 November 2025'."""
    return f"{moment.day} {moment.strftime('%B %Y')}"


def short_date(moment: datetime) -> str:
    """'27 Nov 2025'."""
    return f"{moment.day} {moment.strftime('%b %Y')}"


def _story_view(number: int, story: Story, settings: Settings, with_image: bool) -> StoryView:
    article = story.article
    url = safe_url(article.url)
    published = article.published.astimezone(settings.tz) if article.published else None
    source = _source(article) or _host(url)
    return StoryView(
        number=number,
        title=_title(article),
        url=url,
        source=source,
        date=short_date(published) if published else "",
        summary=_clean(story.summary),
        image=safe_url(article.image) if with_image else None,
        also=[_also_link(other) for other in story.also],
        section=_clean(article.section or ""),
        reading=reading_time(article.text),
        image_alt=_image_alt(article, source),
        image_width=article.image_width if article.image_height else None,
    )


def _tracked(
    stories: list[StoryView],
    groups: list[Group],
    settings: Settings,
    secret: str,
    label: str,
    reader: str = "",
) -> tuple[list[StoryView], list[Group]]:
    """The stories with their links (and their "also covered by" links) through
    BASE_URL/c/TOKEN (issue, position, URL signed), and `?r=` the reader's click key marker
    when `reader` is one ([tracking] per_subscriber)."""
    from digest.clicks import tracked_url

    def link(number: int, url: str) -> str:
        tracked = tracked_url(settings.base_url, secret, label, number, url)
        return f"{tracked}?r={reader}" if reader else tracked

    def one(story: StoryView) -> StoryView:
        # "Also covered by" links count for their story (its position), leading to their own URL.
        also = [replace(a, url=link(story.number, a.url)) if a.url else a for a in story.also]
        return replace(story, url=link(story.number, story.url) if story.url else None, also=also)

    by_number = {story.number: one(story) for story in stories}
    return [by_number[s.number] for s in stories], [
        Group(g.title, [by_number.get(s.number, s) for s in g.stories]) for g in groups
    ]


def _image_alt(article: Article, source: str) -> str:
    """The image's own alt text; else, as the headline is right below it, "Photo: SOURCE"."""
    own = shorten(article.image_alt or "", 200)
    if own and own.casefold() != _title(article).casefold():
        return own
    return f"Photo: {source}" if source else "Photo"


def _also_link(article: Article) -> Link:
    url = safe_url(article.url)
    return Link(text=_source(article) or _host(url) or _title(article), url=url)


def _source(article: Article) -> str:
    """The source's name, cut at a word to SOURCE_LIMIT characters with an ellipsis: a feed's
    100-character title must not make a four-line call to action."""
    name = _clean(article.source or "")
    if len(name) <= SOURCE_LIMIT:
        return name
    cut = name[: SOURCE_LIMIT - 1].rsplit(" ", 1)[0] or name[: SOURCE_LIMIT - 1]
    return cut.rstrip(" ,;:-–—|·") + ELLIPSIS


def _title(article: Article) -> str:
    return _clean(article.title) or "(untitled)"


def _host(url: str | None) -> str:
    host = urlsplit(url).hostname if url else None
    return (host or "").removeprefix("www.")


def _clean(text: str) -> str:
    """One line of printable text: control characters dropped, whitespace runs collapsed."""
    return _WHITESPACE.sub(" ", _UNPRINTABLE.sub("", text)).strip()


def _note_paragraphs(tokens: list[Token]) -> list[str]:
    """The note as plain paragraphs: list items start with '- ', links show their URL."""
    paragraphs: list[str] = []
    bullet = ""
    for token in tokens:
        if token.type == "list_item_open":
            bullet = "- "
        elif token.type == "inline":
            words: list[str] = []
            href: str | None = None
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    words.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    words.append(" ")
                elif child.type == "link_open":
                    href = safe_url(str(child.attrs.get("href", "")))
                elif child.type == "link_close" and href:
                    words.append(f" <{href}>")
            text = _clean("".join(words))
            if text:
                paragraphs.append(bullet + text)
            bullet = ""
    return paragraphs


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


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """One template of `env` rendered, its faults as a TemplateError saying where."""
    return _render_template(env, name, context)


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
