"""Body text of real pages: digest's HTML reader beside trafilatura.extract alone.

Every page of ../shared/corpus/dated-pages/ (DIGEST_SHARED moves ../shared) is read the way
`digest ingest URL` reads a fetched page (`read_bytes` with its URL) and handed to
`trafilatura.extract` (its defaults, with the URL; with --as-digest, without comments and
tables, as digest calls it) in the same run. For each page: the
characters each kept, and the word overlap between the two (the share of trafilatura's words,
counted with repeats, that digest's text holds too — recall — and the share of digest's words
that trafilatura's holds — precision). A page one side returns nothing for is counted apart.

Agreement is not quality: with --generated, each BBC article of ../shared/corpus/
bbc-news-summary is built into a page of one of four layouts (semantic HTML5, div soup with a
"Read more" inside the body, a blog with reader comments, a table with <br> paragraphs), its
furniture made of the other articles' headlines and sentences, and digest's text and
trafilatura.extract's (defaults; and as digest asks) are scored against the known body: word
precision, recall and F1.

Usage: python bench/extraction.py [--corpus DIR] [--as-digest] [--generated]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import re
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trafilatura

from digest.sources import read_bytes

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DIGEST_SHARED") or HERE.parents[1] / "shared")
CORPUS = SHARED / "corpus" / "dated-pages"
_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    """The words of a text, case-folded, with their counts."""
    return Counter(_WORD.findall(text.casefold()))


def _digest_text(data: bytes, url: str) -> str:
    """The body text digest keeps of a page, read as `digest ingest URL` reads it."""
    result = read_bytes(data, url, page_url=url, name=url)
    return result.articles[0].text if result.articles else ""


# ---- generated pages: a known body inside site furniture -----------------------------------

BBC = SHARED / "corpus" / "bbc-news-summary" / "article"
LAYOUTS = ("semantic", "div-soup", "blog-comments", "table-br")


@dataclass
class Page:
    """A generated page, its layout, and the body text it was built around."""

    name: str
    layout: str
    html: str
    body: str
    title: str


def bbc_articles(folder: Path) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) of every BBC article: the first line is the title, blank lines part
    paragraphs, a paragraph's lines are its sentences."""
    found = []
    for path in sorted(folder.glob("*/*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        title, _, rest = text.partition("\n")
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", rest) if p.strip()]
        found.append((title.strip(), paragraphs))
    return found


def generated_pages(folder: Path) -> list[Page]:
    """Each BBC article in one of four layouts (in turn), furnished with the other articles'
    headlines and sentences: navigation, teasers, a "Read more" inside the body, most-read
    lists, reader comments, a cookie notice, a footer. Deterministic (seeded)."""
    articles = bbc_articles(folder)
    pages = []
    for number, (title, paragraphs) in enumerate(articles):
        rng = random.Random(number)
        others = [a for n, a in enumerate(articles) if n != number]
        teasers = rng.sample(others, 6)
        layout = LAYOUTS[number % len(LAYOUTS)]
        html = _BUILDERS[layout](title, paragraphs, teasers, rng)
        pages.append(Page(f"{number:03d}-{layout}", layout, html, "\n\n".join(paragraphs), title))
    return pages


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")


def _nav() -> str:
    items = ["Home", "News", "Business", "Sport", "Culture", "Travel", "Weather", "Sign in"]
    return "".join(f'<li><a href="/{i.casefold()}">{i}</a></li>' for i in items)


_FOOTER = (
    "<p>Copyright 2005 The Daily Example. All rights reserved. The Daily Example is not "
    "responsible for the content of external sites.</p><p><a href='/privacy'>Privacy</a> "
    "<a href='/terms'>Terms of use</a> <a href='/contact'>Contact us</a></p>"
)
_COOKIES = (
    "<div class='cookie-banner'><p>We use cookies to give you the best experience on our "
    "website. By continuing to browse you agree to our use of cookies.</p>"
    "<button>Accept</button></div>"
)


def _teaser_list(teasers: list[tuple[str, list[str]]]) -> str:
    return "".join(
        f'<li><a href="/news/{_slug(t)}">{_e(t)}</a><p>{_e(p[0].split(". ")[0])}.</p></li>'
        for t, p in teasers
    )


def _semantic(title: str, paragraphs: list[str], teasers: Any, rng: random.Random) -> str:
    body = "".join(f"<p>{_e(p)}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)} - "
        f"The Daily Example</title></head><body><header><nav><ul>{_nav()}</ul></nav></header>"
        f"<main><article><h1>{_e(title)}</h1><p class='byline'>By Staff Reporter</p>{body}"
        f"<aside class='related'><h2>Related stories</h2><ul>{_teaser_list(teasers[:3])}</ul>"
        f"</aside></article><aside class='sidebar'><h2>Most read</h2><ol>"
        f"{_teaser_list(teasers[3:])}</ol></aside></main><footer>{_FOOTER}</footer></body></html>"
    )


def _div_soup(title: str, paragraphs: list[str], teasers: Any, rng: random.Random) -> str:
    parts = [f"<p>{_e(p)}</p>" for p in paragraphs]
    t, p = teasers[0]
    read_more = f'<p class="read-more">Read more: <a href="/news/{_slug(t)}">{_e(t)}</a></p>'
    parts.insert(min(2, len(parts)), read_more)
    share = (
        "<div class='share'><a href='#'>Share</a> <a href='#'>Tweet</a> <a href='#'>Email</a></div>"
    )
    side = "".join(
        f"<div class='teaser'><h3><a href='/news/{_slug(t)}'>{_e(t)}</a></h3>"
        f"<p>{_e(' '.join(p[:1]))}</p></div>"
        for t, p in teasers[1:]
    )
    return (
        f"<html><head><title>{_e(title)}</title><meta name='viewport' content='width=device-width'>"
        f"</head><body><div id='wrapper'><div class='top'><ul class='menu'>{_nav()}</ul></div>"
        f"<div class='col-main'><div class='story-body'><h1>{_e(title)}</h1>{share}"
        f"{''.join(parts)}{share}</div></div><div class='col-side'><h2>Top stories</h2>{side}"
        f"</div></div>{_COOKIES}<div class='bottom'>{_FOOTER}</div></body></html>"
    )


def _blog_comments(title: str, paragraphs: list[str], teasers: Any, rng: random.Random) -> str:
    body = "".join(f"<p>{_e(p)}</p>" for p in paragraphs)
    comments = "".join(
        f"<li class='comment'><cite>{name}</cite> says:<div class='comment-body'><p>"
        f"{_e(rng.choice(p))}</p></div></li>"
        for name, (_, p) in zip(("Anna", "Bob", "Chris", "Dana"), teasers[:4], strict=True)
    )
    recent = "".join(f"<li><a href='/{_slug(t)}'>{_e(t)}</a></li>" for t, _ in teasers[4:])
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)} | Notes</title>"
        f"</head><body><div id='page'><div id='header'><h2 class='site-title'>Notes</h2></div>"
        f"<div id='content'><div class='post'><h1 class='entry-title'>{_e(title)}</h1>"
        f"<div class='entry-meta'>Posted in Business</div><div class='entry-content'>{body}"
        f"</div></div><div id='comments'><h3>4 responses</h3><ol class='commentlist'>"
        f"{comments}</ol></div></div><div id='sidebar'><h3>Recent posts</h3><ul>{recent}</ul>"
        f"</div><div id='footer'>{_FOOTER}</div></div></body></html>"
    )


def _table_br(title: str, paragraphs: list[str], teasers: Any, rng: random.Random) -> str:
    body = "<br><br>".join(_e(p) for p in paragraphs)
    links = "<br>".join(f"<a href='/{_slug(t)}'>{_e(t)}</a>" for t, _ in teasers)
    return (
        f"<html><head><title>{_e(title)}</title></head><body><table width='100%'><tr>"
        f"<td colspan='2'><ul>{_nav()}</ul></td></tr><tr><td width='20%' valign='top'>"
        f"<b>Other news</b><br>{links}</td><td valign='top'><font size='4'><b>{_e(title)}</b>"
        f"</font><br><br>{body}</td></tr><tr><td colspan='2'>{_FOOTER}</td></tr></table>"
        "</body></html>"
    )


_BUILDERS: dict[str, Callable[..., str]] = {
    "semantic": _semantic,
    "div-soup": _div_soup,
    "blog-comments": _blog_comments,
    "table-br": _table_br,
}


def scores(found: str, body: str, title: str) -> tuple[float, float, float]:
    """Word precision, recall and F1 of an extracted text against the known body (a leading
    title line left out: it is not body, and readers of either keep it apart)."""
    if found.startswith(title):
        found = found[len(title) :]
    a, b = words(found), words(body)
    shared = sum((a & b).values())
    precision = shared / sum(a.values()) if a else 0.0
    recall = shared / sum(b.values()) if b else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def generated(folder: Path) -> int:
    """Score digest and trafilatura.extract against the known bodies of generated pages."""
    out = sys.stdout
    pages = generated_pages(folder)
    if not pages:
        print(f"no BBC articles at {folder} (set DIGEST_SHARED)", file=out)
        return 2
    readers: dict[str, Callable[[Page], str]] = {
        "digest": lambda page: _digest_text(page.html.encode(), _page_url(page)),
        "extract": lambda page: trafilatura.extract(page.html, url=_page_url(page)) or "",
        "extract as digest asks": lambda page: (
            trafilatura.extract(
                page.html, url=_page_url(page), include_comments=False, include_tables=False
            )
            or ""
        ),
    }
    table: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for page in pages:
        for reader, read in readers.items():
            found = scores(read(page), page.body, page.title)
            table.setdefault((reader, page.layout), []).append(found)
            table.setdefault((reader, "all"), []).append(found)
    print(
        f"{len(pages)} generated pages ({', '.join(LAYOUTS)}), word scores against the body",
        file=out,
    )
    print(f"{'':24} {'layout':14} {'precision':>9} {'recall':>7} {'F1':>6} {'F1<0.9':>7}", file=out)
    for layout in (*LAYOUTS, "all"):
        for reader in readers:
            rows = table[(reader, layout)]
            p, r, f = (statistics.mean(row[i] for row in rows) for i in range(3))
            low = sum(row[2] < 0.9 for row in rows)
            print(f"{reader:24} {layout:14} {p:9.3f} {r:7.3f} {f:6.3f} {low:7}", file=out)
    return 0


def _page_url(page: Page) -> str:
    return f"https://news.example.org/{page.name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument(
        "--as-digest",
        action="store_true",
        help="call trafilatura.extract without comments and tables, as digest does",
    )
    parser.add_argument(
        "--generated",
        action="store_true",
        help="score both against the known bodies of pages built from the BBC articles",
    )
    args = parser.parse_args()
    if args.generated:
        return generated(BBC)
    out = sys.stdout
    truth_path = args.corpus / "truth.json"
    if not truth_path.is_file():
        print(f"no corpus at {args.corpus} (set DIGEST_SHARED or --corpus)", file=out)
        return 2
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    ours_chars, theirs_chars, recall, precision = [], [], [], []
    only_ours = only_theirs = neither = 0
    for name, entry in sorted(truth.items()):
        data = (args.corpus / name).read_bytes()
        url = entry["url"]
        ours = _digest_text(data, url)
        options = {"include_comments": False, "include_tables": False} if args.as_digest else {}
        theirs = trafilatura.extract(data, url=url, **options) or ""
        if not ours or not theirs:
            only_ours += bool(ours)
            only_theirs += bool(theirs)
            neither += not ours and not theirs
            continue
        a, b = words(ours), words(theirs)
        shared = sum((a & b).values())
        ours_chars.append(len(ours))
        theirs_chars.append(len(theirs))
        recall.append(shared / max(1, sum(b.values())))
        precision.append(shared / max(1, sum(a.values())))
    n = len(recall)
    print(f"{len(truth)} pages; both have text on {n}", file=out)
    print(
        f"text only from digest: {only_ours}, only from trafilatura.extract: {only_theirs}, "
        f"from neither: {neither}",
        file=out,
    )
    print(
        f"characters, median: digest {statistics.median(ours_chars):,.0f}, "
        f"trafilatura.extract {statistics.median(theirs_chars):,.0f}",
        file=out,
    )
    print(
        f"trafilatura's words digest keeps (recall): median {statistics.median(recall):.3f}, "
        f"mean {statistics.mean(recall):.3f}, pages under 0.8: {sum(r < 0.8 for r in recall)}",
        file=out,
    )
    print(
        f"digest's words trafilatura keeps (precision): median {statistics.median(precision):.3f}"
        f", mean {statistics.mean(precision):.3f}, pages under 0.8: "
        f"{sum(p < 0.8 for p in precision)}",
        file=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
