"""The editor's review on autopilot: the draft and its review copy, approval, and the send.

At draft time the sources are read, the lineup chosen, and each of `[schedule] editors` gets
a review copy: the issue as a sample reader gets it (links dead), above it the near-misses
with their scores, and signed links to approve the issue, pin or drop a story. The copy goes
through the configured sender and is not a delivery: the ledger is not touched.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from digest.delivery import Outcome
from digest.delivery.ledger import token_secret
from digest.delivery.message import EnvelopeMaker
from digest.delivery.senders import make_sender
from digest.errors import DigestError
from digest.models import Issue, RenderedIssue, Subscriber, Window
from digest.render import mime_body
from digest.schedule import SlotReport, holder
from digest.selection import Candidate, pick_key
from digest.settings import Settings
from digest.store import Store
from digest.tokens import TokenError, read_parts, sign_parts

if TYPE_CHECKING:
    from digest.store import RunRow

ACTIONS = ("approve", "pin", "drop")
LINK_DAYS = 7  # a review link works this long after the copy was sent
NEAR_MISSES = 5
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


class ReviewError(DigestError):
    """A draft, approval or review link cannot be used as asked."""


@dataclass(frozen=True)
class ReviewAction:
    """What a signed review link asks for."""

    label: str  # the issue window
    action: str  # approve, pin, drop
    key: str  # the story's URL (pin, drop); "" for approve
    expires: int  # Unix time


def review_token(secret: str, label: str, action: str, key: str = "", days: int = LINK_DAYS) -> str:
    """The signed token of one review link."""
    expires = int(time.time()) + days * 86400
    return sign_parts(secret, "review", label, action, key, str(expires))


def read_review_token(secret: str, token: str, now: float | None = None) -> ReviewAction:
    """What a review token asks; ReviewError when it is forged or has expired."""
    try:
        parts = read_parts(secret, token) if len(token) <= 3000 else []
    except TokenError:
        parts = []
    if len(parts) != 5 or parts[0] != "review" or parts[2] not in ACTIONS:
        raise ReviewError("this review link is not valid", "use a link from the latest review copy")
    _, label, action, key, expires = parts
    if int(expires) < (time.time() if now is None else now):
        raise ReviewError(
            "this review link has expired",
            "run 'digest draft' for a fresh review copy, or 'digest approve' in the terminal",
        )
    return ReviewAction(label, action, key, int(expires))


# ---- the review copy ---------------------------------------------------------------------


@dataclass
class DraftReport:
    """What a draft did: the issue it prepared and who got the review copy."""

    label: str
    number: int
    stories: int
    ingested: str | None = None  # the ingest's summary line
    reviews: list[tuple[str, Outcome]] = field(default_factory=list)

    def line(self) -> str:
        """One line for the editor."""
        sent = sum(1 for _, o in self.reviews if o.status == "sent")
        return (
            f"draft of #{self.number} ({self.label}): {self.stories} stories; "
            f"review copy sent to {sent} of {len(self.reviews)} editors"
        )


def _link(settings: Settings, secret: str, label: str, action: str, key: str = "") -> str:
    return f"{settings.base_url.rstrip('/')}/review/{review_token(secret, label, action, key)}"


def _story_key(candidate: Candidate) -> str:
    article = candidate.story.article
    return pick_key(article.url or article.origin)


def review_panel(
    settings: Settings, secret: str, window: Window, candidates: list[Candidate], why: str
) -> tuple[str, str]:
    """The (html, text) of the editor's panel above the issue: actions and near-misses."""
    chosen = sorted((c for c in candidates if c.rank is not None), key=lambda c: c.rank or 0)
    missed = [c for c in candidates if c.rank is None][:NEAR_MISSES]
    linked = bool(settings.base_url)
    approval = (
        "It goes out at the send time once approved."
        if settings.schedule_approval == "required"
        else "It goes out at the send time (approval is automatic)."
    )
    esc = html.escape

    def action(label: str, act: str, key: str = "") -> str:
        if not linked:
            return ""
        url = esc(_link(settings, secret, window.label, act, key))
        return f' <a href="{url}" style="color:#2f5bea;font-weight:bold;">{esc(label)}</a>'

    rows = [
        f'<p style="margin:0 0 8px;font-size:16px;"><strong>Review copy</strong> of '
        f"{esc(window.label)} ({esc(why)}). {esc(approval)}"
        + (action("Approve this issue", "approve") if linked else "")
        + "</p>"
    ]
    text = [f"REVIEW COPY of {window.label} ({why}). {approval}"]
    if linked:
        text.append(f"Approve: {_link(settings, secret, window.label, 'approve')}")
    else:
        text.append("Approve with: digest approve (set [newsletter] base_url for links)")

    def story(c: Candidate, act: str, mark: str, note: str) -> None:
        key, title = _story_key(c), c.story.article.title
        facts = f"score {c.story.score:.3f}" + (f"; {note}" if note else "")
        rows.append(f"<li>{esc(title)} <small>({esc(facts)})</small>{action(act, act, key)}</li>")
        text.append(f"  {mark} {title} ({facts})")
        if linked:
            text.append(f"     {act}: {_link(settings, secret, window.label, act, key)}")

    rows.append('<p style="margin:8px 0 4px;"><strong>In the issue</strong></p><ol>')
    text.append("\nIn the issue:")
    for c in chosen:
        story(c, "drop", f"{c.rank}.", "")
    rows.append("</ol>")
    if missed:
        rows.append('<p style="margin:8px 0 4px;"><strong>Near-misses</strong></p><ul>')
        text.append("\nNear-misses:")
        for c in missed:
            story(c, "pin", "-", c.reason)
        rows.append("</ul>")
    block = (
        '<div role="note" style="background:#eef3ff;color:#1b2540;border-bottom:2px solid '
        "#2f5bea;padding:12px 16px;font:14px/1.5 -apple-system,Segoe UI,Roboto,Arial,"
        f'sans-serif;">{"".join(rows)}</div>'
    )
    return block, "\n".join(text)


def send_review(
    store: Store, settings: Settings, window: Window, why: str
) -> tuple[Issue, list[tuple[str, Outcome]]]:
    """Render the window's issue as subscribers will see it, with the review panel, and send
    it to each editor (not a delivery); the issue and each editor's outcome."""
    from digest import pipeline
    from digest.editorial import rank_window

    sample = pipeline.preview(store, settings, window, None)
    secret = token_secret(store, settings)
    ranking = rank_window(store, settings, window, None)
    block, text = review_panel(settings, secret, window, ranking.candidates, why)
    match = _BODY.search(sample.html)
    at = match.end() if match else 0
    page = sample.html[:at] + block + sample.html[at:]
    issue = sample.issue
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    review = replace(
        issue,
        id=0,
        label=f"{window.label}-review-{stamp}",
        rendered=RenderedIssue(
            subject=f"[REVIEW] {issue.rendered.subject}",
            preheader=issue.rendered.preheader,
            html=mime_body(page),
            text=mime_body(f"{text}\n\n{sample.text}"),
        ),
    )
    return issue, mail_editors(store, settings, review, list(settings.schedule_editors))


def mail_editors(
    store: Store, settings: Settings, message: Issue, editors: list[str]
) -> list[tuple[str, Outcome]]:
    """One copy of `message` (no per-reader values) to each editor through the sender."""
    if not editors:
        return []
    sender = make_sender(settings)
    maker = EnvelopeMaker(message, settings.list, settings, token_secret(store, settings))
    envelopes = [
        maker.sample(Subscriber(email=address, name="", lists=[settings.list], id=n))
        for n, address in enumerate(editors, start=1)
    ]
    sender.open(message)
    try:
        outcomes = sender.send(envelopes)
    finally:
        sender.close()
    return list(zip(editors, outcomes, strict=True))


def notice(settings: Settings, label: str, subject: str, body: str) -> Issue:
    """A short message to the editors (a held send, say), as an issue-shaped message."""
    page = f"<html><body><p>{html.escape(body)}</p></body></html>"
    now = datetime.now(UTC)
    return Issue(
        id=0,
        number=0,
        label=f"{label}-notice-{now:%Y%m%dT%H%M%S%f}",
        since=now,
        until=now,
        lineup=[],
        rendered=RenderedIssue(subject, "", mime_body(page), mime_body(body)),
        created_at=now,
    )


# ---- draft, approve, send ------------------------------------------------------------------


def draft(
    store: Store, settings: Settings, now: datetime | None = None, *, gather: bool = True
) -> DraftReport:
    """Read the sources, choose the lineup of the window ending `now`, send the review copy,
    and record the draft (`digest draft`, and the clock's draft slot)."""
    from digest import pipeline
    from digest.selection import parse_window

    now = now or datetime.now(UTC)
    window = parse_window(None, None, None, settings.tz, now=now)
    frozen = store.issue_by_label(window.label)
    if frozen is not None:
        raise ReviewError(
            f"issue #{frozen.number} ({window.label}) was already sent",
            "the next draft comes with the next window; 'digest status' shows the sends",
        )
    ingested = None
    if gather and settings.sources:
        ingested = pipeline.ingest_sources(store, settings, ()).line()
    issue, reviews = send_review(store, settings, window, "draft")
    return DraftReport(
        label=window.label,
        number=issue.number,
        stories=len(issue.lineup),
        ingested=ingested,
        reviews=reviews,
    )


def record_draft(
    store: Store, slot: str, report: DraftReport, window: Window, outcome: str = "drafted"
) -> None:
    """Keep the drafted window on the slot's row: the send slot sends what was reviewed."""
    store.finish_run(
        slot, outcome, report.line(), label=window.label, since=window.since, until=window.until
    )


def draft_by_hand(store: Store, settings: Settings, now: datetime | None = None) -> DraftReport:
    """`digest draft`: a draft now, recorded like the clock's."""
    from digest.selection import parse_window

    now = now or datetime.now(UTC)
    report = draft(store, settings, now)
    slot = f"draft {now.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ} (by hand)"
    store.claim_run(slot, "draft", now, holder())
    record_draft(store, slot, report, parse_window(None, None, None, settings.tz, now=now))
    return report


def draft_slot(store: Store, settings: Settings, slot: str, at: datetime) -> SlotReport:
    """The clock's draft slot (already claimed): draft, or record why not."""
    from digest.selection import parse_window

    try:
        report = draft(store, settings, at)
    except DigestError as e:
        store.finish_run(slot, "failed", e.message)
        return SlotReport(slot, "draft", "failed", e.message)
    record_draft(store, slot, report, parse_window(None, None, None, settings.tz, now=at))
    return SlotReport(slot, "draft", "drafted", report.line())


@dataclass
class ApproveReport:
    """What `digest approve` (or an approve link) did."""

    label: str
    already: bool

    def line(self) -> str:
        """One line for the editor."""
        if self.already:
            return f"{self.label} was already approved"
        return f"{self.label} approved: it goes out at the next send time"


def approve(
    store: Store, settings: Settings, label: str | None = None, by: str = ""
) -> ApproveReport:
    """Approve the latest draft (or the window `label`) for its send slot."""
    found = store.latest_draft(label=label)
    if found is None or found.label is None:
        raise ReviewError(
            f"there is no draft of {label} to approve" if label else "there is no draft to approve",
            "run 'digest draft' first (or wait for the clock's); 'digest schedule' lists them",
        )
    label = found.label
    if store.issue_by_label(label) is not None:
        raise ReviewError(f"issue {label} was already sent", "approve the next draft instead")
    fresh = store.approve(label, holder(), by or "approved in the terminal")
    return ApproveReport(label, already=not fresh)


def act(store: Store, settings: Settings, request: ReviewAction, by: str) -> str:
    """Do what a review link asks; a pin or drop sends a new review copy. One line back."""
    from digest.editorial import pick

    if request.action == "approve":
        return approve(store, settings, request.label, by).line()
    if store.issue_by_label(request.label) is not None:
        raise ReviewError(
            f"issue {request.label} was already sent: its lineup is frozen",
            "pin or drop for the next issue with 'digest pin URL' / 'digest drop URL'",
        )
    window = window_of(store, request.label)
    done = pick(store, request.key, request.action).line()
    withdrawn = store.withdraw_approval(request.label)
    send_review(store, settings, window, f"{request.action} of {request.key}")
    return (
        done
        + ("; its approval is withdrawn" if withdrawn else "")
        + "; a new review copy is on its way"
    )


def window_of(store: Store, label: str) -> Window:
    """The window a draft of `label` covered."""
    found = store.latest_draft()
    if found is None or found.label != label or found.since is None or found.until is None:
        raise ReviewError(
            f"{label} is not the latest draft", "use the links of the latest review copy"
        )
    return Window(found.since, found.until, label)


def send_slot(store: Store, settings: Settings, slot: str, at: datetime) -> SlotReport:
    """The clock's send slot (already claimed): send the draft if approved, else hold it and
    tell the editors (once: a held slot is run again only once approved)."""
    from digest import pipeline

    found: RunRow | None = store.latest_draft(before=at)
    if found is None or found.label is None or found.since is None or found.until is None:
        return _settle(store, slot, "skipped", "no draft before this send time")
    label = found.label
    window = Window(found.since, found.until, label)
    if store.issue_by_label(label) is not None:
        return _settle(store, slot, "skipped", f"{label} was already sent", window)
    if settings.schedule_approval == "required" and store.approval(label) is None:
        detail = f"{label} is not approved"
        _settle(store, slot, "held", detail, window)
        tell = notice(
            settings,
            label,
            f"[HELD] {settings.name}: {label} is waiting for approval",
            f"The issue {label} was due to go out at {at:%Y-%m-%d %H:%M %Z} and is held: "
            "nobody approved it. Approve it with the link in the review copy, or run "
            "'digest approve'; it goes out at the clock's next look.",
        )
        mail_editors(store, settings, tell, list(settings.schedule_editors))
        return SlotReport(slot, "send", "held", detail + "; the editors were told")
    try:
        plan = pipeline.plan_send(store, settings, window, None, None, gather=False)
        report = pipeline.send(store, settings, plan)
    except DigestError as e:
        failed = _settle(store, slot, "failed", e.message, window)
        tell = notice(
            settings,
            label,
            f"[FAILED] {settings.name}: {label} was not sent",
            f"The send of {label} due at {at:%Y-%m-%d %H:%M %Z} failed: {e.message}. "
            f"{e.hint or ''} Then run 'digest send' for it.",
        )
        mail_editors(store, settings, tell, list(settings.schedule_editors))
        return failed
    return _settle(store, slot, "sent", report.line(), window)


def _settle(
    store: Store, slot: str, outcome: str, detail: str, window: Window | None = None
) -> SlotReport:
    store.finish_run(
        slot,
        outcome,
        detail,
        label=window.label if window else None,
        since=window.since if window else None,
        until=window.until if window else None,
    )
    return SlotReport(slot, "send", outcome, detail)


def held_and_approved(store: Store, slot: str) -> bool:
    """Whether the held send `slot` has since been approved (the clock runs it again)."""
    found = store.run(slot)
    return bool(
        found is not None
        and found.outcome == "held"
        and found.label
        and store.approval(found.label) is not None
    )
