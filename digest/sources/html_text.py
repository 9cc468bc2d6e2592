"""HTML fragments (feed content, titles) turned into plain text; no markup survives."""

from __future__ import annotations

import re
from html import unescape

import nh3

# Elements that start a new paragraph.
_BLOCK = (
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "main",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "figure",
    "figcaption",
    "hr",
    "address",
)
_BLOCK_TAG = re.compile(rf"</?({'|'.join(_BLOCK)})\s*/?>", re.IGNORECASE)
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\f\v]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What survives the allowlist before the text is taken: structure, never scripts or styles.
ALLOWED_TAGS = {
    "p",
    "br",
    "div",
    "span",
    "a",
    "b",
    "strong",
    "i",
    "em",
    "u",
    "s",
    "sub",
    "sup",
    "blockquote",
    "pre",
    "code",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "figure",
    "figcaption",
    "table",
    "thead",
    "tbody",
    "tr",
    "td",
    "th",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "aside",
    "main",
    "address",
    "small",
    "mark",
    "abbr",
    "cite",
    "q",
    "time",
}
# Elements dropped with everything inside them.
_DROPPED = {
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "svg",
    "math",
    "select",
    "button",
    "form",
    "title",
    "head",
    "textarea",
}


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: paragraphs joined by a blank line, spaces tidied."""
    if "<" not in html and "&" not in html:
        return tidy(html)
    # After the allowlist the markup is regular (no attributes, text escaped), so plain
    # substitutions turn it into text; an HTML parser would cost more than nh3 itself.
    clean = sanitize(html)
    clean = _BREAK.sub("\n", clean)
    clean = _BLOCK_TAG.sub("\n\n", clean)
    return tidy(unescape(_ANY_TAG.sub("", clean)))


def sanitize(html: str) -> str:
    """HTML cut down to an allowlist of tags, without attributes, scripts or styles."""
    return nh3.clean(
        scrub(html),
        tags=ALLOWED_TAGS,
        clean_content_tags=_DROPPED,
        attributes={},
        url_schemes=set(),
        strip_comments=True,
        link_rel=None,
    )


def scrub(text: str) -> str:
    """The text with each lone surrogate (left by "&#xD800;" or a JSON "\\ud800") as U+FFFD,
    which no encoder, database or HTML sanitizer refuses; and without NUL characters (left
    by "&#0;" or "\\u0000"), which PostgreSQL refuses in text."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")  # refuses any surrogate, and is quicker than searching for one
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def tidy(text: str) -> str:
    """Collapse runs of spaces, trim lines and keep at most one blank line between paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    paragraphs: list[str] = []
    current: list[str] = []
    # One substitution over the whole text, and none where no run of spaces needs one.
    if "  " in text or "\t" in text or "\f" in text or "\v" in text:
        text = _SPACES.sub(" ", text)
    for line in text.split("\n"):
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)
