"""Fetching a feed or page over HTTP(S) with a timeout, a size cap and a User-Agent."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from digest import __version__ as _version
from digest.errors import SourceError

USER_AGENT = f"digest/{_version} (newsletter digest; +https://example.com/digest)"
CHUNK = 64 * 1024


@dataclass
class Fetched:
    """A fetched document: where it ended up after redirects, its bytes and content type."""

    url: str
    data: bytes
    content_type: str
    charset: str | None
    status: int = 200  # 304: unchanged since the validators sent, and `data` is empty
    etag: str | None = None
    last_modified: str | None = None


def fetch(
    url: str,
    *,
    timeout: float = 20.0,
    max_bytes: int = 10_000_000,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET `url`, reading at most `max_bytes`; raises SourceError on any failure.

    With `etag` / `last_modified` from an earlier answer the request is conditional, and
    an unchanged document comes back as status 304 with no data.
    """
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise SourceError(
            f"{url}: not an http(s) URL", "sources are files, folders or http:// / https:// URLs"
        )
    request = urllib.request.Request(
        url,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
            "text/html;q=0.8, text/plain;q=0.7, */*;q=0.5",
        },
    )
    if etag:
        request.add_header("If-None-Match", etag)
    if last_modified:
        request.add_header("If-Modified-Since", last_modified)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers: Message = response.headers
            length = headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise _too_large(max_bytes)
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)  # stop reading: the rest is never downloaded
                chunks.append(chunk)
            return Fetched(
                url=response.geturl(),
                data=b"".join(chunks),
                content_type=headers.get_content_type(),
                charset=headers.get_content_charset(),
                etag=headers.get("ETag"),
                last_modified=headers.get("Last-Modified"),
            )
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return Fetched(
                url=url,
                data=b"",
                content_type="",
                charset=None,
                status=304,
                etag=e.headers.get("ETag") or etag,
                last_modified=e.headers.get("Last-Modified") or last_modified,
            )
        raise SourceError(
            f"HTTP {e.code} {e.reason}", "check the URL in your sources, or try again later"
        ) from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            raise _timed_out(timeout) from e
        raise SourceError(
            f"cannot connect: {reason}", "check the URL and your network connection"
        ) from e
    except TimeoutError as e:
        raise _timed_out(timeout) from e
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot fetch: {e}", "check the URL in your sources") from e


def _too_large(max_bytes: int) -> SourceError:
    return SourceError(
        f"larger than {max_bytes:,} bytes; stopped reading",
        "point the source at a smaller page or feed",
    )


def _timed_out(timeout: float) -> SourceError:
    return SourceError(f"no answer within {timeout:g} s", "try again later, or check the URL")
