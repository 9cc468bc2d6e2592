"""`digest serve`'s click redirects: `GET /c/TOKEN` counts a click on a story and answers 302
to the URL signed in the token, and nowhere else (a token that is not ours gets 400).

Clicks are written in batches by one thread of their own (a group commit): the redirect
does not wait for the database, so a burst of clicks costs a few transactions, and a click
lost to a crash is only a count.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.clicks import read_click_token, reader_of, visitor
from digest.store import Click

if TYPE_CHECKING:
    from digest.web import Site

log = logging.getLogger(__name__)


class ClickRecorder:
    """Clicks waiting to be written, written by one thread, all that arrived at once together."""

    MAX = 1000

    def __init__(self, site: Site) -> None:
        self.site = site
        self.pending: list[Click] = []
        self.draining = False
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="digest-clicks")
        self._task: asyncio.Task[None] | None = None

    def add(self, click: Click) -> None:
        """Queue one click; it is written soon after."""
        self.pending.append(click)
        if not self.draining:
            self.draining = True
            self._task = asyncio.create_task(self._drain())  # kept: the loop holds tasks weakly

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # let the requests already read in this loop turn join
            while self.pending:
                batch, self.pending = self.pending[: self.MAX], self.pending[self.MAX :]
                try:
                    await loop.run_in_executor(self.thread, self._write, batch)
                except Exception:  # noqa: BLE001  a count lost; the redirects went on
                    log.exception("%d clicks could not be recorded", len(batch))
        finally:
            self.draining = False

    def _write(self, batch: list[Click]) -> None:
        gate = self.site.gate
        if gate is None:
            self.site.store.record_clicks(batch)
            return
        with gate.hold(urgent=False):
            self.site.store.record_clicks(batch)


class Clicks:
    """The click handler of one `Site`."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.recorder = ClickRecorder(site)

    async def redirect(self, request: Request) -> Response:
        """GET /c/TOKEN: count the click, then 302 to the URL the token signs."""
        claims = read_click_token(self.site.secret, str(request.path_params["token"]))
        if claims is None or not claims.url.startswith(("https://", "http://")):
            return self.site.bad_link()
        reader = reader_of(self.site.secret, request.query_params.get("r", ""))
        if (
            reader is not None
        ):  # [tracking] per_subscriber: a key that is not ours counts anonymously
            who = f"s{reader}"
        else:
            ip = request.client.host if request.client else ""
            who = visitor(self.site.secret, ip, request.headers.get("user-agent", ""))
        self.recorder.add(
            Click(claims.issue_label, claims.position, claims.url, who, "link", datetime.now(UTC))
        )
        return RedirectResponse(claims.url, status_code=302, headers={"Cache-Control": "no-store"})


def clicks(site: Site) -> Clicks:
    """The click handler of `site`, made once."""
    found = site.__dict__.get("_clicks")
    if not isinstance(found, Clicks):
        found = site.__dict__["_clicks"] = Clicks(site)
    return found
