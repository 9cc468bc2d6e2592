"""A real headless Chromium (Debian's package) driven by Playwright, for browser tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DIGEST_CHROMIUM", "/usr/bin/chromium")
# Never let Chromium reach out: this machine has no network but the package registries.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
# Where test runs keep screenshots (CI can pick them up from here).
ARTIFACTS = Path(
    os.environ.get("DIGEST_TEST_ARTIFACTS") or Path(__file__).parents[1] / "test-artifacts"
)


def require_chromium() -> None:
    """Skip locally without Chromium; in CI (which installs it) a missing browser fails."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run must apt-get install chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[object]:
    """A launched headless Chromium (a playwright Browser)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
