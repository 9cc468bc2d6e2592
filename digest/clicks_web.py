"""`digest serve`'s click redirects: `GET /c/TOKEN` counts a click on a story and answers 302
to the URL signed in the token, and nowhere else (a token that is not ours gets 400).

Clicks are written in batches by one thread of their own (a group commit, `Batcher.add`):
the redirect does not wait for the database, so a burst of clicks costs a few transactions,
and a click lost to a crash is only a count.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from digest.batching import Batcher
from digest.clicks import read_click_token, reader_of, visitor
from digest.store import Click

if TYPE_CHECKING:
    from digest.web import Site

NO_STORE = {"cache-control": "no-store"}
LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"  # what Starlette's RedirectResponse leaves unquoted


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

    def close(self) -> None:
        """Wait until the clicks queued so far are written (the server has stopped; its
        loop still runs the batch in progress)."""
        deadline = time.monotonic() + 30
        while (self.recorder.pending or not self.recorder.idle.is_set()) and (
            time.monotonic() < deadline
        ):
            self.recorder.idle.wait(0.05)
        self.recorder.thread.shutdown(wait=True)

    async def redirect(self, request: Request) -> Response:
        """GET /c/TOKEN through the router: count the click, then 302 to the URL the token
        signs; a token that is not ours gets the 400 page."""
        ip = request.client.host if request.client else ""
        agent = request.headers.get("user-agent", "")
        token = str(request.path_params["token"])
        location = self.count(token, request.query_params.get("r", ""), ip, agent)
        if location is None:
            return self.site.bad_link()
        return Response(status_code=302, headers={"location": location, **NO_STORE})

    async def short(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """GET /c/TOKEN answered straight from ASGI (`web.WebApp`), without the router: a
        redirect is the most frequent request a sent issue brings. False when the token is
        not ours (the router then answers, with its page)."""
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        key = parse_qs(query).get("r", [""])[-1] if query else ""
        client = scope.get("client")
        location = self.count(str(scope["path"])[3:], key, client[0] if client else "", agent)
        if location is None:
            return False
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return True

    def count(self, token: str, key: str, ip: str, agent: str) -> str | None:
        """Queue the click a valid token stands for; the Location to answer with (the signed
        URL, quoted as a header needs), or None when the token is not ours."""
        claims = read_click_token(self.site.secret, token)
        if claims is None or not claims.url.startswith(("https://", "http://")):
            return None
        # [tracking] per_subscriber: a key that is not ours counts as an anonymous click.
        reader = reader_of(self.site.secret, key)
        who = f"s{reader}" if reader is not None else visitor(self.site.secret, ip, agent)
        self.recorder.add(
            Click(claims.issue_label, claims.position, claims.url, who, "link", datetime.now(UTC))
        )
        return quote(claims.url, safe=LOCATION_SAFE)


def clicks(site: Site) -> Clicks:
    """The click handler of `site`, made once."""
    found = site.__dict__.get("_clicks")
    if not isinstance(found, Clicks):
        found = site.__dict__["_clicks"] = Clicks(site)
    return found
