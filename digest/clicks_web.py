"""`digest serve`'s click redirects: `GET /c/TOKEN` counts a click on a story and answers 302
to the URL signed in the token, and nowhere else (a token that is not ours gets 400).

Clicks are written in batches by one thread of their own (a group commit, `Batcher.add`):
the redirect does not wait for the database, so a burst of clicks costs a few transactions,
and a click lost to a crash is only a count.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from digest.batching import Batcher
from digest.clicks import read_click_token, reader_of, visitor
from digest.store import Click

if TYPE_CHECKING:
    from digest.web import Site


class Clicks:
    """The click handler of one `Site`."""

    def __init__(self, site: Site) -> None:
        self.site = site
        write = site.store.record_clicks
        if site.gate is not None:  # SQLite: in turn with the server's other writes
            write = site.gate.wrap(write, urgent=False)
        self.recorder: Batcher[Click] = Batcher(
            write,
            ThreadPoolExecutor(1, thread_name_prefix="digest-clicks"),
            name="clicks",
            most=1000,
        )

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
