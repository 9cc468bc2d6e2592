"""The issue as a reader sees it, in a real Chromium: phone and desktop width, light and dark,
images shown and blocked. What is asserted is what a reader would notice."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.render import render_issue, render_preview
from tests.browser import ARTIFACTS, chromium
from tests.test_render import NOW, VALUES, WINDOW, settings_for, story_with

# What a photo is here: 1200×675, the usual 16:9 of a news site's lead image.
PHOTO_SIZE = (1200, 675)


def png(width: int, height: int) -> bytes:
    """A solid PNG of the given size (made here: the browser never leaves this machine)."""
    row = b"\0" + bytes((90, 130, 170)) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def issue_html() -> str:
    """A full issue: note, sections, images on two stories, long and short texts."""
    from digest.models import Lineup

    stories = [
        story_with(
            "Council approves protected cycle lanes on six city-centre streets",
            "The council voted 31 to 12 on Tuesday to build protected cycle lanes.",
            url="https://news.example.org/cycle-lanes",
            source="Harbour News",
            image="https://cdn.example.org/cycle-lanes.jpg",
            image_alt="Cyclists on the harbour road",  # as the page states it, with its size
            image_width=PHOTO_SIZE[0],
            image_height=PHOTO_SIZE[1],
        ),
        *[
            story_with(
                f"Story {n}: the ferry timetable changes again from December onwards",
                "Winter sailings to the islands will leave twenty minutes earlier.",
                url=f"https://ferries.example.com/{n}",
                source="Ferry Notices",
                section="Transport" if n % 2 else "Heritage",
                image=f"https://cdn.example.org/{n}.jpg",
            )
            for n in range(2, 9)
        ],
    ]
    stories[0].article.text = "word " * 920
    settings = settings_for(
        note="Welcome back! This week: **the harbour**.",
        sections=("Heritage", "Transport"),
        images="all",
    )
    rendered = render_issue(Lineup(WINDOW, stories), settings, 8, now=NOW)
    return render_preview(rendered, VALUES)[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("email") / "issue.html"
    path.write_text(issue_html(), encoding="utf-8")
    return path


def open_email(browser: Any, path: Path, width: int, scheme: str, images: bool) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page = context.new_page()
    photo = png(*PHOTO_SIZE)

    def local_only(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        elif route.request.resource_type == "image" and images:
            route.fulfill(status=200, content_type="image/png", body=photo)
        else:
            route.abort()  # images blocked, and nothing else may leave

    page.route("**/*", local_only)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page


SEEN = """() => {
  const px = v => parseFloat(v) || 0;
  const images = [...document.images].map(img => {
    const r = img.getBoundingClientRect();
    const box = img.closest('.digest-picture').getBoundingClientRect();
    const style = getComputedStyle(img);
    return {w: r.width, h: r.height, boxH: box.height, loaded: img.complete && img.naturalWidth > 0,
            lineHeight: px(style.lineHeight), alt: img.alt};
  });
  const card = getComputedStyle(document.querySelector('div.digest-card'));
  const title = getComputedStyle(document.querySelector('h2.digest-title a'));
  return {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    images, cardBackground: card.backgroundColor, titleColor: title.color,
    toc: [...document.querySelectorAll('a[href^="#story-"]')].map(a => a.getAttribute('href')),
  };
}"""


@pytest.mark.parametrize("images", [True, False], ids=["images", "blocked"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 700])
def test_what_a_reader_sees(
    browser: Any, page_file: Path, width: int, scheme: str, images: bool
) -> None:
    page = open_email(browser, page_file, width, scheme, images)
    seen = page.evaluate(SEEN)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = f"email-{width}-{scheme}-{'images' if images else 'blocked'}.png"
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)

    assert seen["scrollWidth"] <= seen["clientWidth"], "sideways scrolling"
    assert len(seen["images"]) == 8
    for image in seen["images"]:
        assert image["alt"].startswith("Photo: ") or image["alt"] == "Cyclists on the harbour road"
        assert image["w"] <= min(552, width)
        if images:
            assert image["loaded"]
            ratio = PHOTO_SIZE[1] / PHOTO_SIZE[0]
            assert abs(image["h"] - image["w"] * ratio) <= 1, "distorted"
        else:
            # The alt text on its tinted block, one line tall: never a blank box.
            assert not image["loaded"]
            assert image["h"] <= image["lineHeight"] + 2, image
            assert image["boxH"] <= image["h"] + 2, image
    dark = scheme == "dark"
    assert (seen["cardBackground"] == "rgb(27, 31, 36)") is dark
    assert seen["titleColor"] != seen["cardBackground"]

    # "In this issue": every link lands on its story, whose heading is then in view.
    assert seen["toc"] == [f"#story-{n}" for n in range(1, 9)]
    for href in reversed(seen["toc"]):
        page.evaluate("window.scrollTo(0, 0)")
        page.click(f'a[href="{href}"]')
        page.wait_for_function(
            """id => { const r = document.getElementById(id).getBoundingClientRect();
                       return r.top > -2 && r.bottom <= window.innerHeight + 2; }""",
            arg=href[1:],
            timeout=2000,
        )
    page.context.close()
