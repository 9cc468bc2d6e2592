"""The preview in a real Chromium at phone and desktop width: layout, images, links."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.preview import PreviewServer, PreviewSource
from digest.render import safe_url
from digest.settings import read_settings
from tests.browser import ARTIFACTS, chromium
from tests.test_preview import fresh_folder, newsletter, run  # noqa: F401  (fixtures, by name)

# A 1×1 PNG standing in for every remote image: the browser never leaves this machine.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture
def server(newsletter: Path) -> Iterator[PreviewServer]:  # noqa: F811  (fixture by name)
    config = newsletter / "digest.toml"
    text = config.read_text(encoding="utf-8")
    assert 'logo_url = ""' in text  # digest init writes the [brand] section
    config.write_text(
        text.replace('logo_url = ""', 'logo_url = "https://cdn.example.com/logo.png"'),
        encoding="utf-8",
    )
    running = PreviewServer(PreviewSource(lambda: read_settings(config), {}), 0).start()
    yield running
    running.stop()


def open_page(browser: Any, server: PreviewServer, width: int, path: str, **options: Any) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    page = context.new_page()

    def local_only(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        elif route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=PIXEL)
        else:
            route.abort()

    page.route("**/*", local_only)
    page.goto(server.url + path)
    page.wait_for_load_state("load")
    return page


LAYOUT = """() => {
  const cards = [...document.querySelectorAll('td.digest-story')].map(td => {
    const r = td.getBoundingClientRect();
    return {x: Math.round(r.left), y: Math.round(r.top), w: Math.round(r.width)};
  });
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    cards,
    images: [...document.images].map(i => ({src: i.src, alt: i.getAttribute('alt')})),
    titles: [...document.querySelectorAll('h2.digest-title a, h3.digest-title a')]
      .map(a => a.getAttribute('href')),
  };
}"""


@pytest.mark.parametrize("width", [375, 1024])
def test_preview_in_chromium(server: PreviewServer, width: int) -> None:
    lineup = json.loads(run("select", "--json").output)
    with chromium() as browser:
        page = open_page(browser, server, width, "email")
        found = page.evaluate(LAYOUT)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"preview-{width}.png"), full_page=True)
        shell = open_page(browser, server, 1280, f"?width={'mobile' if width < 500 else 'desktop'}")
        shell.screenshot(path=str(ARTIFACTS / f"preview-shell-{width}.png"))

    assert found["scrollWidth"] <= found["innerWidth"], "sideways scrolling"
    cards = found["cards"]
    assert len(cards) == len(lineup) > 1
    assert len({card["x"] for card in cards}) == 1  # one column: every card starts at one x
    assert all(card["w"] <= width for card in cards)
    assert [card["y"] for card in cards] == sorted(card["y"] for card in cards)
    if width < 500:
        assert all(card["w"] >= width - 60 for card in cards)  # full width on a phone
    assert found["images"], "the logo at least"
    assert all((image["alt"] or "").strip() for image in found["images"])
    linked = [safe_url(story["url"]) for story in lineup if safe_url(story["url"])]
    assert found["titles"] == linked


def test_dark_mode_in_chromium(server: PreviewServer) -> None:
    script = """() => getComputedStyle(document.querySelector('div.digest-card')).backgroundColor"""
    with chromium() as browser:
        light = open_page(browser, server, 600, "email", color_scheme="light").evaluate(script)
        dark_page = open_page(browser, server, 600, "email", color_scheme="dark")
        dark = dark_page.evaluate(script)
        forced = open_page(browser, server, 600, "email?scheme=dark").evaluate(script)
        dark_page.screenshot(path=str(ARTIFACTS / "preview-dark.png"))
    assert light == "rgb(255, 255, 255)"
    assert dark == forced == "rgb(27, 31, 36)"
