"""Reading sources: files, folders and URLs holding feeds (RSS, Atom, JSON Feed), OPML lists,
HTML pages, scraped text pages, and CMS exports (Markdown with front matter, JSON, CSV).

`read_source` never raises for bad input: every problem becomes a `SourceFailure`, and one
bad file never stops the rest of a folder.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import charset_normalizer

from digest.errors import DigestError
from digest.identity import canonical_url
from digest.models import Article
from digest.sources.dates import from_timestamp, settle_date
from digest.sources.exports import (
    looks_like_csv,
    parse_csv_export,
    parse_json_export,
    parse_markdown,
)
from digest.sources.feeds import parse_feed
from digest.sources.fetch import AllowPrivate, fetch
from digest.sources.html_text import scrub
from digest.sources.htmlpage import parse_html_page
from digest.sources.jsonfeed import is_json_feed, parse_json_feed
from digest.sources.opml import is_opml, parse_opml
from digest.sources.results import FetchInfo, SourceFailure, SourceResult
from digest.sources.textpage import parse_text_page
from digest.urls import is_url

__all__ = [
    "AllowPrivate",
    "FetchInfo",
    "SourceFailure",
    "SourceResult",
    "expand",
    "read_bytes",
    "read_source",
    "sniff",
]

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/xml",
        "text/xml",
        "application/feed+xml",
    }
)
# Encodings news pages really use; guessing among all of them mistakes Latin-1 for cp775.
LIKELY_ENCODINGS = [
    "cp1252",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "koi8_r",
    "cp949",
    "euc_kr",
    "shift_jis",
    "euc_jp",
    "gb18030",
    "big5",
    "iso8859_7",
    "cp1254",
    "latin_1",
]
_KINDS_HINT = (
    "digest reads feeds (RSS, Atom, JSON Feed), OPML lists, HTML pages, plain-text "
    "pages, Markdown, JSON and CSV exports"
)
# Control characters that text never holds (tab, newlines and form feed it does).
_CONTROL = bytes(c for c in range(0x20) if c not in (0x09, 0x0A, 0x0C, 0x0D))
# The errors of a path that names nothing (as Path.exists() tells them).
_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
_FRONT_MATTER = re.compile(r"^---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(\r?\n|$)", re.DOTALL)
_FIRST_TAG = re.compile(r"<\s*([a-z][\w:.-]*)", re.IGNORECASE)
# A DOCTYPE may hold an internal subset in brackets, with its own "<!ENTITY …>" declarations.
_PREAMBLE = re.compile(
    r"^(\s|<\?.*?\?>|<!--.*?-->|<!doctype[^>\[]*(\[.*?\]\s*)?>)*", re.IGNORECASE | re.DOTALL
)
# The encoding a document declares in its first bytes: <?xml … encoding="…"?> or <meta charset>.
_DECLARED = re.compile(
    rb"<\?xml[^>]*?encoding\s*=\s*[\"']([\w.:-]+)|<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)",
    re.IGNORECASE,
)
# Labels that browsers read as windows-1252 (the WHATWG Encoding Standard).
_AS_CP1252 = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii"})


def read_source(
    spec: str,
    *,
    tz: tzinfo = UTC,
    timeout: float = 20.0,
    max_bytes: int = 10_000_000,
    mapping: Mapping[str, str] | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_private: AllowPrivate = False,
) -> SourceResult:
    """Every article in a file, a folder (recursively, hidden files skipped) or an http(s) URL.

    The kind (feed, OPML list, HTML page, plain-text page, export) is told from the content,
    not the name. `mapping` names the fields of CMS exports; `etag` / `last_modified` make a
    URL's request conditional (an unchanged one answers 304 and yields nothing).
    A URL whose host is on a loopback, private or other special address is refused unless
    `allow_private` (see `fetch`); `timeout` bounds its whole download.
    """
    spec = spec.strip()
    if is_url(spec):
        return _read_url(
            spec,
            tz=tz,
            timeout=timeout,
            max_bytes=max_bytes,
            mapping=mapping,
            etag=etag,
            last_modified=last_modified,
            allow_private=allow_private,
        )
    if not spec:
        return _failed(spec, "empty source name; list files, folders or URLs under [sources]")
    path = Path(spec).expanduser().absolute()
    try:
        # Open first and ask the open file what it is: an ingest reads a folder of 10,000
        # files one file spec at a time, and a look-up of each path by name costs.
        fd = os.open(path, os.O_RDONLY)
    except (OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno not in _MISSING:
            return _failed(str(path), f"cannot read the file: {e.strerror or e}")
        return _failed(str(path), "no such file or folder; check the path in your sources")
    try:
        found = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        return _failed(str(path), f"cannot read the file: {e.strerror or e}")
    if stat.S_ISDIR(found.st_mode):
        os.close(fd)
        result = SourceResult()
        for name in _files_in(path):
            result.extend(_read_file(name, tz=tz, max_bytes=max_bytes, mapping=mapping))
        return result
    return _read_file(path, tz=tz, max_bytes=max_bytes, mapping=mapping, opened=(fd, found))


def expand(spec: str) -> list[str]:
    """The files under a folder spec (as read_source would read them), else the spec itself."""
    spec = spec.strip()
    if spec and not is_url(spec):
        path = Path(spec).expanduser().absolute()
        if path.is_dir():
            return [str(file) for file in _files_in(path)]
    return [spec]


def read_bytes(
    data: bytes,
    origin: str,
    *,
    tz: tzinfo = UTC,
    fallback: datetime | None = None,
    content_type: str | None = None,
    charset: str | None = None,
    page_url: str | None = None,
    mapping: Mapping[str, str] | None = None,
    name: str = "",
) -> SourceResult:
    """The articles in one document's bytes, whatever its kind; `fallback` dates undated ones.

    `name` (a file name) only helps tell Markdown and CSV from plain text.
    """
    result = _read_bytes(
        data,
        origin,
        tz=tz,
        fallback=fallback,
        content_type=content_type,
        charset=charset,
        page_url=page_url,
        mapping=mapping,
        name=name,
    )
    for article in result.articles:
        _scrub(article)
    return result


def _read_bytes(
    data: bytes,
    origin: str,
    *,
    tz: tzinfo,
    fallback: datetime | None,
    content_type: str | None,
    charset: str | None,
    page_url: str | None,
    mapping: Mapping[str, str] | None,
    name: str,
) -> SourceResult:
    if not data.strip():
        return _failed(origin, "the file is empty")
    if _looks_binary(data):
        return _failed(origin, f"binary data, not text; {_KINDS_HINT}")
    kind = sniff(data, content_type, name=name)
    try:
        if kind == "feed":
            return parse_feed(
                data, origin, tz=tz, fallback=fallback, base_url=page_url, content_type=content_type
            )
        if kind == "opml":
            return parse_opml(data, origin)
        text = decode(data, charset)
        if _control_ratio(text) > 0.1:
            return _failed(origin, f"binary data, not text; {_KINDS_HINT}")
        if kind == "json":
            return _read_json(text, origin, tz=tz, fallback=fallback, mapping=mapping)
        if kind == "csv":
            return parse_csv_export(text, origin, mapping=mapping, tz=tz, fallback=fallback)
        if kind == "markdown":
            article = parse_markdown(text, origin, mapping=mapping, tz=tz)
        elif kind == "html":
            article = parse_html_page(text, origin, tz=tz, page_url=page_url, read_at=fallback)
        else:
            article = parse_text_page(text, origin, tz=tz)
        if article.url is None and page_url:
            article.url = canonical_url(page_url)
    except DigestError as e:
        return _failed(origin, _reason(e))
    except Exception as e:  # noqa: BLE001 - a parser's bug on one document must not stop the batch
        return _failed(origin, f"could not be read ({type(e).__name__}: {e}); {_KINDS_HINT}")
    # HTML pages and Markdown records say why they are undated; a text page has no date line.
    why = "no date line near its top (such as 'Published: 1 April 2025')"
    return SourceResult(articles=[settle_date(article, fallback, why=why)])


def sniff(data: bytes, content_type: str | None = None, *, name: str = "") -> str:
    """'feed', 'opml', 'html', 'json', 'markdown', 'csv' or 'text', told from the first bytes
    (and the HTTP content type, or the file name where the content alone cannot tell)."""
    head = data[:4096].decode("latin-1").lstrip("\ufeff\xef\xbb\xbf\xff\xfe")
    if "\x00" in head:  # UTF-16: look at the text itself
        head = decode(data[:4096])[:4096].lstrip("\ufeff")
    stripped = _PREAMBLE.sub("", head, count=1)
    if stripped.startswith("<"):
        if is_opml(stripped):
            return "opml"
        match = _FIRST_TAG.match(stripped)
        tag = match.group(1).lower() if match else ""
        if tag in ("rss", "feed", "rdf:rdf", "rdf"):
            return "feed"
        if tag in ("html", "head", "body", "meta", "title", "div", "article", "p", "link"):
            return "html"
        if content_type in FEED_TYPES or data.lstrip().startswith(b"<?xml"):
            return "feed"  # feedparser judges other XML, and says so if it is no feed
        return "html"
    suffix = Path(name).suffix.lower()
    declared_json = suffix == ".json" or (content_type or "").endswith("json")
    if declared_json or (
        stripped[:1] in ("{", "[") and data.rstrip()[-1:] in (b"}", b"]") and len(data) > 2
    ):
        return "json"
    if _FRONT_MATTER.match(stripped) or suffix in _MARKDOWN_SUFFIXES:
        return "markdown"
    if content_type == "text/html" and "<" in stripped:
        return "html"
    if suffix in (".csv", ".tsv") or content_type == "text/csv" or looks_like_csv(stripped):
        return "csv"
    return "text"


def decode(data: bytes, charset: str | None = None) -> str:
    """Text of `data`: the declared charset (HTTP, else the document's own declaration), else
    UTF-8, else a detected one, else Latin-1.

    A declaration that does not decode the bytes is passed over. Where detection finds
    several single-byte encodings equally likely (a short Latin-1 page fits cp1250 as well as
    cp1252), the one earliest in LIKELY_ENCODINGS wins: windows-1252, the web's default.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        charset = "utf-16"  # the byte-order mark says so, whatever was declared
    for encoding in (charset, "utf-8-sig", declared_charset(data)):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                pass
    return data.decode(_detected(data[:200_000]) or "latin-1", "replace")


def declared_charset(data: bytes) -> str | None:
    """The encoding the document names in its first 2 KB (XML declaration or <meta>), with
    the labels browsers read as windows-1252 mapped to it; None if it names none."""
    found = _DECLARED.search(data[:2048])
    if found is None:
        return None
    label = (found.group(1) or found.group(2)).decode("ascii", "replace").lower()
    if label.startswith(("utf-16", "utf16", "utf-32", "utf32")):
        return None  # ASCII bytes cannot be UTF-16 text; the byte-order mark tells real UTF-16
    return "cp1252" if label in _AS_CP1252 else label


def _detected(data: bytes) -> str | None:
    matches = charset_normalizer.from_bytes(data, cp_isolation=LIKELY_ENCODINGS)
    best = matches.best()
    if best is None or not best.encoding:
        return None
    tied = [
        name
        for match in matches
        if match.chaos == best.chaos and match.coherence == best.coherence
        for name in (match.encoding, *match.could_be_from_charset)
    ]
    rank = {name: i for i, name in enumerate(LIKELY_ENCODINGS)}
    return min(tied, key=lambda name: rank.get(name, len(rank)))


def _read_json(
    text: str,
    origin: str,
    *,
    tz: tzinfo,
    fallback: datetime | None,
    mapping: Mapping[str, str] | None,
) -> SourceResult:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return _failed(
            f"{origin}:{e.lineno}",
            f"not valid JSON ({e.msg}, column {e.colno}); fix the file or export it again",
        )
    except RecursionError:
        return _failed(origin, "JSON nested too deeply to read")
    if is_json_feed(data):
        return parse_json_feed(data, origin, tz=tz, fallback=fallback)
    return parse_json_export(data, origin, mapping=mapping, tz=tz, fallback=fallback)


def _read_url(
    url: str,
    *,
    tz: tzinfo,
    timeout: float,
    max_bytes: int,
    mapping: Mapping[str, str] | None,
    etag: str | None,
    last_modified: str | None,
    allow_private: AllowPrivate,
) -> SourceResult:
    try:
        fetched = fetch(
            url,
            timeout=timeout,
            max_bytes=max_bytes,
            etag=etag,
            last_modified=last_modified,
            allow_private=allow_private,
        )
    except DigestError as e:
        return _failed(url, _reason(e))
    info = FetchInfo(fetched.status, fetched.etag, fetched.last_modified)
    if fetched.status == 304:
        return SourceResult(fetch=info)
    result = read_bytes(
        fetched.data,
        url,
        tz=tz,
        fallback=datetime.now(UTC),
        content_type=fetched.content_type,
        charset=fetched.charset,
        page_url=fetched.url,
        mapping=mapping,
        name=fetched.url,
    )
    result.fetch = info
    return result


def _read_file(
    path: Path,
    *,
    tz: tzinfo,
    max_bytes: int,
    mapping: Mapping[str, str] | None = None,
    opened: tuple[int, os.stat_result] | None = None,
) -> SourceResult:
    """The articles of one file; `opened` is its descriptor and status, if it is open."""
    origin = str(path)
    try:
        fd, info = opened or (os.open(path, os.O_RDONLY), None)
        try:
            info = info or os.fstat(fd)
            if info.st_size > max_bytes:
                return _failed(
                    origin,
                    f"file is {info.st_size:,} bytes, over the "
                    f"{max_bytes:,}-byte limit; split it or remove it "
                    "from the sources",
                )
            data = _read_all(fd, info.st_size, max_bytes)
            if len(data) > max_bytes:  # grew while read, or a device or pipe with no size
                return _failed(
                    origin,
                    f"file is over the {max_bytes:,}-byte limit; split it "
                    "or remove it from the sources",
                )
        finally:
            os.close(fd)
    except OSError as e:
        return _failed(origin, f"cannot read the file: {e.strerror or e}")
    return read_bytes(
        data, origin, tz=tz, fallback=from_timestamp(info.st_mtime), mapping=mapping, name=path.name
    )


def _read_all(fd: int, size: int, limit: int) -> bytes:
    """Everything left in the open file `fd`, whose status said `size` bytes; or, when there
    is more than `limit` (a file that grew, /dev/zero, a pipe), the first `limit` + 1 bytes."""
    chunks = [os.read(fd, min(size, limit) + 1)]  # all of it in one read, as a rule
    total = len(chunks[0])
    while chunks[-1] and total <= limit:
        chunks.append(os.read(fd, min(1 << 20, limit + 1 - total)))
        total += len(chunks[-1])
    return chunks[0] if len(chunks) == 2 and not chunks[1] else b"".join(chunks)


def _scrub(article: Article) -> None:
    """Lone surrogates and NULs out of every text field (see `scrub`), so that keys, hashes
    and the store work."""
    article.title, article.text = scrub(article.title), scrub(article.text)
    for name in ("url", "source", "summary", "author", "image", "section", "image_alt"):
        value = getattr(article, name)
        if value is not None:
            setattr(article, name, scrub(value))
    article.related = [scrub(line) for line in article.related]


def _files_in(folder: Path) -> list[Path]:
    """Every non-hidden file under `folder`, in a stable order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if not name.startswith("."))
    return found


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 text has NUL bytes by design
    return b"\x00" in head or head.startswith(b"%PDF-")


def _control_ratio(text: str) -> float:
    sample = text[:8192]
    # In UTF-8 a control character is its own byte and no other character holds that byte;
    # deleting bytes is quicker than a regular expression over the characters.
    encoded = sample.encode("utf-8", "surrogatepass")
    return (len(encoded) - len(encoded.translate(None, _CONTROL))) / max(1, len(sample))


def _reason(error: DigestError) -> str:
    text = f"{error.message}; {error.hint}" if error.hint else error.message
    return " ".join(text.split())


def _failed(source: str, reason: str) -> SourceResult:
    return SourceResult(failures=[SourceFailure(source, reason)])
