"""CMS exports: Markdown with front matter, JSON and CSV, read through a field mapping.

Each record's fields are found by the names in `[sources.mapping]` of digest.toml first,
then by the names CMSs commonly use (`headline`, `body`, `permalink`, `published_at`…).
A mapped name may be a dotted path into nested JSON (`author.name`). A body field whose name
says Markdown (`markdown`, `body_markdown`, `content_md`…) is read as Markdown.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import YAMLHandler
from markdown_it import MarkdownIt

from digest.csvfile import guess_delimiter
from digest.errors import SourceError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import parse_date, settle_date
from digest.sources.html_text import html_to_text, tidy
from digest.sources.results import SourceFailure, SourceResult

# The article fields an export can fill, and the names CMSs use for them, most usual first.
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "title": ("title", "headline", "name", "subject"),
    "text": (
        "body",
        "content",
        "text",
        "content_text",
        "content_html",
        "html",
        "article_body",
        "articlebody",
        "body_html",
        "markdown",
        "body_markdown",
    ),
    "url": ("url", "link", "permalink", "canonical_url", "canonical", "href"),
    "published": (
        "published",
        "published_at",
        "date",
        "pubdate",
        "pub_date",
        "date_published",
        "datepublished",
        "publish_date",
        "created_at",
        "created",
        "updated_at",
    ),
    "summary": ("summary", "excerpt", "description", "dek", "standfirst", "subtitle", "lead"),
    "author": ("author", "byline", "authors", "creator", "writer"),
    "section": ("section", "category", "categories", "topic", "desk", "tags"),
    "source": ("source", "site", "site_name", "publication", "publisher"),
    "image": ("image", "image_url", "featured_image", "thumbnail", "lead_image", "og_image"),
}
# Keys under which a JSON export keeps its list of records.
_LIST_KEYS = ("items", "articles", "posts", "entries", "data", "results", "records", "stories")
_TAG = re.compile(r"<[a-zA-Z/!][^>]*>")
# The name of a field that holds Markdown: one with "markdown" in it, or "md" as one of its
# words ("body_markdown", "bodyMarkdown", "content_md", "md_body", "body.md").
_MARKDOWN_NAME = re.compile(r".*markdown.*|(?:.*[_\-. ])?md(?:[_\-. ].*)?", re.IGNORECASE)
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
# Front matter is a few fields: more than this is no front matter a CMS wrote.
MAX_FRONT_MATTER = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML's safe loader that refuses aliases (`*name`): an alias bomb (a few lines that
    expand to billions of values) stops at its first alias instead of taking the CPU."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


class _BoundedYAML(YAMLHandler):
    """python-frontmatter's YAML handler, bounded in size and without aliases."""

    def load(self, fm: str, **kwargs: object) -> Any:
        if len(fm) > MAX_FRONT_MATTER:
            raise SourceError(
                f"the front matter is {len(fm):,} characters, over the limit of "
                f"{MAX_FRONT_MATTER:,}",
                "keep the block between the '---' lines to the article's fields",
            )
        return yaml.load(fm, Loader=_NoAliasLoader)


def parse_markdown(
    text: str, origin: str, *, mapping: Mapping[str, str] | None = None, tz: tzinfo = UTC
) -> Article:
    """The article in a Markdown file; front matter gives the fields, the rest is the body.

    Without a title in the front matter, the first `# heading` is the title, as text (its
    inline markup rendered away); a front-matter title is kept as written.
    """
    handler = frontmatter.detect_format(text, frontmatter.handlers)
    if isinstance(handler, YAMLHandler):
        handler = _BoundedYAML()
    try:
        post = frontmatter.loads(text, handler=handler)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if isinstance(line, int) else ""
        problem = getattr(e, "problem", None)
        why = f" ({problem})" if isinstance(problem, str) and "alias" in problem else ""
        raise SourceError(
            f"the front matter is not valid YAML{where}{why}",
            "fix the block between the '---' lines at the top",
        ) from e
    meta: dict[str, Any] = dict(post.metadata) if isinstance(post.metadata, dict) else {}
    body = post.content
    if _field(meta, "title", mapping) is None:
        heading = re.search(r"^#\s+(.+?)\s*#*\s*$", body, re.MULTILINE)
        if heading:
            title = html_to_text(_MARKDOWN.renderInline(heading.group(1)))  # "1. x" is no list
            meta = {**meta, "title": title or heading.group(1)}
            body = body[: heading.start()] + body[heading.end() :]
    meta.setdefault("body", body)
    if mapping and "text" in mapping:
        meta.setdefault(mapping["text"], body)
    return record_article(meta, origin, mapping=mapping, tz=tz, markdown=True)


def parse_json_export(
    data: Any,
    origin: str,
    *,
    mapping: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    fallback: datetime | None = None,
) -> SourceResult:
    """The articles of a JSON export: a list of records, or an object holding one."""
    records = _records_in(data)
    if records is None:
        return SourceResult(
            failures=[
                SourceFailure(
                    origin,
                    (
                        "JSON holds no list of articles; expected a JSON Feed, a list of objects "
                        f"or an object with one of: {', '.join(_LIST_KEYS)}"
                    ),
                )
            ]
        )
    result = SourceResult()
    for number, record in enumerate(records, start=1):
        where = f"{origin}: record {number}"
        if not isinstance(record, dict):
            result.failures.append(SourceFailure(where, "not an object; it was skipped"))
            continue
        _add(
            result,
            where,
            lambda r=record: record_article(r, origin, mapping=mapping, tz=tz),
            fallback,
        )
    return result


def parse_csv_export(
    text: str,
    origin: str,
    *,
    mapping: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    fallback: datetime | None = None,
) -> SourceResult:
    """The articles of a CSV export, one per row; bad rows are reported with their line."""
    result = SourceResult()
    header = text[:4096].split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=guess_delimiter(header))
    try:
        for row in reader:
            where = f"{origin}:{reader.line_num}"
            record = {k.strip(): v for k, v in row.items() if isinstance(k, str) and v}
            _add(
                result,
                where,
                lambda r=record: record_article(r, origin, mapping=mapping, tz=tz),
                fallback,
            )
    except csv.Error as e:
        result.failures.append(
            SourceFailure(
                f"{origin}:{reader.line_num}", f"malformed CSV ({e}); the rest was skipped"
            )
        )
    return result


def looks_like_csv(text: str, mapping: Mapping[str, str] | None = None) -> bool:
    """Whether the first line is a CSV header naming a title column and another field."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    delimiter = guess_delimiter(first)
    if delimiter not in first:
        return False
    cells = {c.strip().strip('"').casefold() for c in first.split(delimiter)}
    titles = set(FIELD_NAMES["title"]) | {(mapping or {}).get("title", "").casefold()}
    others = {n for f, names in FIELD_NAMES.items() if f != "title" for n in names}
    others |= {v.casefold() for k, v in (mapping or {}).items() if k != "title"}
    return bool(cells & titles) and bool(cells & others)


def record_article(
    record: Mapping[str, Any],
    origin: str,
    *,
    mapping: Mapping[str, str] | None = None,
    tz: tzinfo = UTC,
    markdown: bool = False,
) -> Article:
    """One export record as an article; raises SourceError naming a missing field."""
    title = _plain(_field(record, "title", mapping))
    # In a Markdown file the body and the summary are Markdown (as Hugo and Jekyll read them);
    # in a JSON or CSV export, the body when its field's name says so.
    as_text = _markdown_text if markdown else _plain
    body_name, body = _named_field(record, "text", mapping)
    text = (_markdown_text if _MARKDOWN_NAME.fullmatch(body_name) else as_text)(body)
    summary = as_text(_field(record, "summary", mapping)) or None
    if not title:
        raise SourceError(
            f"no title (looked for {_names('title', mapping)})",
            'add the field, or name it under [sources.mapping] title = "…"',
        )
    if not text:
        if summary is None:
            raise SourceError(
                f"no body text (looked for {_names('text', mapping)})",
                'add the field, or name it under [sources.mapping] text = "…"',
            )
        text = summary
    url = _plain(_field(record, "url", mapping))
    published_raw = _field(record, "published", mapping)
    published = _date(published_raw, tz)
    return Article(
        title=title,
        text=text,
        origin=origin,
        url=canonical_url(url) if url.lower().startswith(("http://", "https://")) else None,
        source=_plain(_field(record, "source", mapping)) or None,
        published=published,
        summary=summary,
        author=_plain(_field(record, "author", mapping)) or None,
        image=_plain(_field(record, "image", mapping)) or None,
        section=_plain(_field(record, "section", mapping)) or None,
        date_note=None if published else _no_date(published_raw, mapping),
    )


def _no_date(value: Any, mapping: Mapping[str, str] | None) -> str:
    """Why a record is undated: no date field, or one that is not a full date."""
    if value in (None, ""):
        return f"no date field (looked for {_names('published', mapping)})"
    return f"its date {str(value)[:40]!r} is not a day, month and year"


def markdown_to_text(markdown: str) -> str:
    """Plain text of Markdown: markup, images and raw HTML dropped, link texts kept."""
    # Rendered by a CommonMark parser, then through the same allowlist as any other HTML.
    return html_to_text(_MARKDOWN.render(markdown))


def _records_in(data: Any) -> list[Any] | None:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in _LIST_KEYS:
            if isinstance(data.get(key), list):
                return list(data[key])
        if any(name in data for name in FIELD_NAMES["title"]):
            return [data]  # one article on its own
    return None


def _add(result: SourceResult, where: str, make: Any, fallback: datetime | None) -> None:
    try:
        article: Article = make()
    except SourceError as e:
        hint = f"; {e.hint}" if e.hint else ""
        result.failures.append(SourceFailure(where, f"{e.message}{hint}; it was skipped"))
        return
    result.articles.append(settle_date(article, fallback))


def _field(record: Mapping[str, Any], name: str, mapping: Mapping[str, str] | None) -> Any:
    """The record's value for an article field: the mapped name, else a usual one."""
    return _named_field(record, name, mapping)[1]


def _named_field(
    record: Mapping[str, Any], name: str, mapping: Mapping[str, str] | None
) -> tuple[str, Any]:
    """The name of the record's field that holds an article field ("" if none), and its value."""
    if mapping and name in mapping:
        return mapping[name], _lookup(record, mapping[name])
    folded = {k.casefold(): v for k, v in record.items() if isinstance(k, str)}
    for candidate in FIELD_NAMES[name]:
        value = folded.get(candidate)
        if value not in (None, "", [], {}):
            return candidate, value
    return "", None


def _lookup(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _plain(value: Any) -> str:
    """A field's value as one piece of plain text (names of authors, tags joined)."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        value = value.get("name") or value.get("title") or value.get("url") or ""
    if isinstance(value, list):
        return ", ".join(part for part in (_plain(v) for v in value) if part)
    text = str(value)
    return html_to_text(text) if _TAG.search(text) or "&" in text else tidy(text)


def _markdown_text(value: Any) -> str:
    return markdown_to_text(value) if isinstance(value, str) else _plain(value)


def _date(value: Any, tz: tzinfo) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if hasattr(value, "isoformat"):  # a date from YAML front matter
        return parse_date(value.isoformat(), tz)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10**11 else value  # milliseconds, as JS writes them
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_date(str(value), tz) if value else None


def _names(name: str, mapping: Mapping[str, str] | None) -> str:
    if mapping and name in mapping:
        return f"'{mapping[name]}' from [sources.mapping]"
    return ", ".join(FIELD_NAMES[name][:4])
