"""Hostile feeds through the whole path: ingest → select → preview / send → parse the output.

Nothing from the articles may survive as markup that runs: not in the email, not in the
preview file, not in the live preview server's pages.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from digest.preview import PreviewServer, PreviewSource
from digest.settings import read_settings
from tests.test_preview import fresh_folder, get, run  # noqa: F401  (a fixture, used by name)
from tests.test_render import Document

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    "<body onload=alert(1)>",
    "<svg/onload=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    "<style>body{background:url(https://evil.example/t.png)}</style>",
    '<iframe src="https://evil.example/"></iframe>',
    '<object data="https://evil.example/x.swf"></object>',
    '<embed src="https://evil.example/x.swf">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<base href="https://evil.example/">',
    '<form action="https://evil.example/"><input name=p></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<b>unclosed <i>tags <a href='",
    '"><img src=x onerror=alert(1)>',
    "'><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "--><script>alert(1)</script><!--",
    "<![CDATA[<script>alert(1)</script>]]>",
    "</mj-text></mj-column></mj-section><mj-raw><script>alert(1)</script></mj-raw>",
    "{{ settings.smtp_password }}{% raw %}",
    "[[h:unsubscribe_url]] [[t:email]]",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "\u202egnp.exe <marquee onstart=alert(1)>",
]
LINKS = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(document.cookie)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    'https://example.com/" onmouseover="alert(1)',
    "https://example.com/<script>alert(1)</script>",
    "//evil.example/path",
    "file:///etc/passwd",
]
BAD_TAGS = {
    "script",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "applet",
    "form",
    "base",
    "input",
    "link",
    "video",
    "source",
    "details",
    "marquee",
}


def hostile_feed(now: datetime) -> str:
    """An RSS feed whose every field is hostile: titles, links, descriptions, content, images."""
    items = []
    for n, payload in enumerate(PAYLOADS):
        link = LINKS[n % len(LINKS)] if n % 3 == 0 else f"https://news.example.org/story/{n}"
        published = (now - timedelta(hours=n + 1)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        image = LINKS[(n + 1) % len(LINKS)] if n % 2 else "https://cdn.example.org/i.jpg"
        items.append(
            f"""<item>
  <title>{html.escape(f"Story {n} {payload}")}</title>
  <link>{html.escape(link)}</link>
  <guid isPermaLink="false">hostile-{n}</guid>
  <pubDate>{published}</pubDate>
  <enclosure url="{html.escape(image)}" type="image/jpeg" length="1"/>
  <description>{html.escape(f"<p>Summary {n}: {payload} The council met on Tuesday.</p>")}
  </description>
  <content:encoded><![CDATA[<p>Story {n} text. {payload.replace("]]>", "")} The council
  met on Tuesday and decided many things.</p><p>More words follow here.</p>]]></content:encoded>
</item>"""
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>{html.escape('Evil <script>alert(1)</script> Wire')}</title>"
        "<link>https://news.example.org/</link><description>x</description>"
        + "\n".join(items)
        + "</channel></rss>\n"
    )


def assert_inert(markup: str, *, shell: bool = False) -> Document:
    """No element, attribute or URL in `markup` that could run or load something hostile."""
    doc = Document(markup)
    assert [tag for tag, _ in doc.elements].count("body") == 1  # none smuggled in
    for tag, attrs in doc.elements:
        if shell and tag == "script":
            assert "nonce" in attrs and "alert" not in markup.split("<script", 1)[1]
            continue
        if shell and tag == "iframe":  # the preview's own frame: sandboxed, no scripts
            assert attrs["id"] == "email" and "allow-scripts" not in attrs["sandbox"]
            continue
        assert tag not in BAD_TAGS, tag
        if tag == "meta":
            assert attrs.get("http-equiv", "").lower() != "refresh"
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name == "style":
                squashed = value.lower().replace(" ", "")
                assert "expression(" not in squashed and "javascript:" not in squashed
            if name in ("href", "src", "action", "background", "formaction"):
                scheme = urlsplit(value).scheme
                allowed = ("http", "https", "mailto") if name == "href" else ("http", "https")
                if shell and value.startswith("/"):
                    continue
                if name == "href" and re.fullmatch(r"#story-\d+", value):
                    continue  # "In this issue" links to a story further down
                assert scheme in allowed, (tag, name, value)
                if name == "src":  # nothing from the payloads gets loaded
                    assert not urlsplit(value).netloc.endswith("evil.example"), value
    return doc


@pytest.fixture
def hostile(fresh_folder: Path) -> Path:  # noqa: F811  (pytest's fixture by name)
    """A newsletter folder whose only articles come from the hostile feed."""
    feed = fresh_folder / "hostile.xml"
    feed.write_text(hostile_feed(datetime.now(UTC)), encoding="utf-8")
    result = run("ingest", str(feed))
    assert result.exit_code in (0, 1), result.output
    assert result.output.startswith(tuple(f"{n} new" for n in range(10, 31))), result.output
    return fresh_folder


def test_hostile_feed_preview_and_email_are_inert(hostile: Path) -> None:
    result = run("preview", "--top", "25", "--out", "issue.html")
    assert result.exit_code == 0, result.output
    page = (hostile / "issue.html").read_text(encoding="utf-8")
    doc = assert_inert(page)
    assert "<script>alert(1)</script>" in doc.text_of("div")  # where kept: shown, as text
    assert sum(f"Story {n} " in doc.text_of("div") for n in range(len(PAYLOADS))) >= 20
    assert "[[" not in page  # article text cannot pose as a subscriber marker
    text = run("preview", "--top", "25", "--text").output
    assert "<script>alert(1)</script>" in text  # the text part is plain text
    for line in text.splitlines():
        if line.strip().startswith("<") and line.strip().endswith(">") and ":" in line:
            assert urlsplit(line.strip()[1:-1]).scheme in ("http", "https", "mailto"), line

    assert run(
        "send", "--no-ingest", "--top", "25", "--outbox", "out", "--yes", "--force"
    ).exit_code in (0, 1)
    emls = list((hostile / "out").glob("*.eml"))
    assert emls
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("html",))
    assert body is not None
    assert_inert(body.get_content())
    assert "\n" not in str(msg["Subject"])


def test_hostile_feed_in_the_preview_server_is_inert(hostile: Path) -> None:
    source = PreviewSource(lambda: read_settings(hostile / "digest.toml"), {"top": 25})
    server = PreviewServer(source, 0).start()
    try:
        _, headers, shell = get(server.url)
        assert_inert(shell, shell=True)
        assert "Story 0 &lt;script&gt;" in shell or "Story 0" not in shell
        for path in ("email", "email?scheme=dark"):
            _, headers, page = get(server.url + path)
            assert "script-src" not in headers["Content-Security-Policy"]
            assert_inert(page)
        _, headers, text = get(server.url + "text")
        assert headers["Content-Type"].startswith("text/plain")
    finally:
        server.stop()
