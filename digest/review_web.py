"""`digest serve`'s review links: /review/TOKEN asks, a POST does it.

A GET only shows what the link will do and a button: mail scanners and link previews open
every link in a message, and must not approve an issue or drop a story on their own.
"""

from __future__ import annotations

import html

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.delivery.ledger import token_secret
from digest.errors import DigestError
from digest.review import ReviewAction, act, read_review_token
from digest.settings import Settings
from digest.store import Store

_WHAT = {
    "approve": "Approve {label}: it goes out at the next send time.",
    "pin": "Pin {key} into {label}, and send a new review copy.",
    "drop": "Drop {key} from {label}, and send a new review copy.",
}


def _page(status: int, title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font:16px/1.5 -apple-system,Segoe UI,Roboto,Arial,sans-serif;'
        'max-width:36em;margin:2em auto;padding:0 1em;">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def review_routes(settings: Settings, store: Store) -> list[Route]:
    """The routes of the review links, for the app's route list."""

    def read(request: Request) -> ReviewAction:
        secret = token_secret(store, settings)
        return read_review_token(secret, str(request.path_params["token"]))

    async def review(request: Request) -> Response:
        try:
            asked = await run_in_threadpool(read, request)
        except DigestError as e:
            return _page(400, "This link cannot be used", f"<p>{html.escape(e.message)}.</p>"
                         f"<p>{html.escape(e.hint or '')}</p>")  # fmt: skip
        what = _WHAT[asked.action].format(label=asked.label, key=asked.key)
        if request.method == "GET":
            return _page(
                200,
                f"Review of {asked.label}",
                f"<p>{html.escape(what)}</p><form method=post>"
                f'<button type=submit style="font-size:18px;padding:8px 20px;">'
                f"{html.escape(asked.action.capitalize())}</button></form>",
            )
        try:
            line = await run_in_threadpool(act, store, settings, asked, "approved by review link")
        except DigestError as e:
            return _page(409, "Nothing was changed", f"<p>{html.escape(e.message)}.</p>"
                         f"<p>{html.escape(e.hint or '')}</p>")  # fmt: skip
        return _page(200, "Done", f"<p>{html.escape(line)}.</p>")

    return [Route("/review/{token}", review, methods=["GET", "POST"])]
