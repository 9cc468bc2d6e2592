"""The stages wired together: each function is one CLI command's work and returns a report."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from digest.check import CheckReport, check_issue
from digest.delivery import Envelope
from digest.delivery.lease import SendLease
from digest.delivery.ledger import DeliveryReport, Progress, deliver, token_secret
from digest.delivery.message import EnvelopeMaker
from digest.delivery.senders import make_sender
from digest.delivery.workers import coordinate
from digest.editorial import rank_window
from digest.errors import DigestError, SendError, SourceError, SubscriberError
from digest.ingest import IngestReport, ingest
from digest.ingest import Progress as IngestProgress
from digest.models import UNDATED, Issue, Lineup, Subscriber, Variant, Window
from digest.render import render_issue, render_preview, shown_positions
from digest.selection import lineup_json
from digest.settings import CONFIG_NAME, Settings, read_settings
from digest.sources import SourceFailure, read_source
from digest.sources.samples import write_samples
from digest.store import Lease, Store
from digest.subscribers import ImportReport, import_csv
from digest.summarize import summarize
from digest.topics import match_topics, topics_key
from digest.urls import is_url
from digest.variants import build_variants, variant_for_topics

SAMPLE_SUBSCRIBER = Subscriber(email="subscriber@example.com", name="Sample Subscriber", id=0)


def configured_sources(settings: Settings, specs: Sequence[str]) -> list[str]:
    """The sources to read: those given, else those in digest.toml (paths relative to it)."""
    if specs:
        return list(specs)
    if not settings.sources:
        raise SourceError(
            "no sources given and none configured",
            "pass files, folders or URLs to 'digest ingest', or list them in digest.toml "
            "under [sources] paths",
        )
    return [s if is_url(s) else str(settings.resolve(s)) for s in settings.sources]


def ingest_sources(
    store: Store,
    settings: Settings,
    specs: Sequence[str],
    *,
    metrics: Path | None = None,
    progress: IngestProgress | None = None,
) -> IngestReport:
    """Read sources into the store, then a metrics CSV (alone, if no source is configured)."""
    chosen = (
        [] if metrics and not (specs or settings.sources) else configured_sources(settings, specs)
    )
    return ingest(
        store,
        chosen,
        tz=settings.tz,
        mapping=settings.source_mapping,
        metrics=metrics,
        progress=progress,
        allow_private=settings.allow_private_addresses,
        fetch_timeout=settings.fetch_timeout,
        timeout=settings.ingest_timeout,
        max_feeds=settings.max_feeds_per_list,
        names=settings.source_names,
    )


def article_records(
    store: Store, settings: Settings, window: Window | None, *, undated_only: bool = False
) -> list[dict[str, Any]]:
    """Stored articles (in a window, or all; only the undated ones with `undated_only`) as the
    `digest articles --json` records."""
    found = (
        store.all_articles()
        if window is None
        else store.articles_between(window.since, window.until)
    )
    if undated_only:
        found = [article for article in found if article.date_flag == UNDATED]
    records = []
    for article in found:
        summary = summarize(
            article,
            sentences=settings.summary_sentences,
            budget=settings.summary_chars,
            language=settings.language,
        )
        records.append(
            {
                "id": article.id,
                "title": article.title,
                "url": article.url,
                "source": article.source,
                "origin": article.origin,
                "origins": store.article_origins(article.id) if article.id else [article.origin],
                "published": article.published.isoformat() if article.published else None,
                "date_flag": article.date_flag,
                "undated": article.date_flag == UNDATED,  # the date is only when it was read
                # why, as read (the store keeps it for undated articles only; null too for
                # one stored before it was kept)
                "date_note": article.date_note,
                "author": article.author,
                "image": article.image,
                "summary": summary.text,
                "text": article.text,
            }
        )
    return records


def build_lineup(store: Store, settings: Settings, window: Window, top: int | None) -> Lineup:
    """The window's top stories, summarized (pins, drops and caps applied)."""
    return rank_window(store, settings, window, top).lineup()


def current_issue(
    store: Store, settings: Settings, window: Window, top: int | None, note: str | None = None
) -> Issue:
    """The window's issue: frozen if it was already sent, else a fresh draft (id 0).

    Its editor's note: `note` (--note FILE.md) if given, else the one `digest note` left for
    the next issue, else [newsletter] note.
    """
    frozen = store.issue_by_label(window.label)
    if frozen is not None:
        return frozen
    chosen = note if note is not None else store.next_note()
    if chosen is not None:
        settings = replace(settings, note=chosen)
    ranking = rank_window(store, settings, window, top)
    lineup = ranking.lineup()
    number = store.next_issue_number()
    click_secret = (settings.secret or store.secret()) if settings.track_clicks else ""
    now = datetime.now(UTC)  # the issue's date, its variants' too
    issue = Issue(
        id=0,
        number=number,
        label=window.label,
        since=window.since,
        until=window.until,
        lineup=_with_positions(lineup_json(lineup), shown_positions(lineup, settings.sections)),
        rendered=render_issue(lineup, settings, number, now=now, click_secret=click_secret),
        created_at=now,
        note=settings.note if settings.note.strip() else "",
    )
    if settings.personalize and settings.topics:
        made = build_variants(
            settings,
            ranking,
            lineup,
            number,
            store.topic_set_counts(),
            click_secret=click_secret,
            top=top,
            now=now,
        )
        issue.variants, issue.general_sets = made.variants, made.general_sets
        issue.__dict__["renders"] = 1 + made.renders
    return issue


def _with_positions(entries: list[dict[str, Any]], shown: list[int]) -> list[dict[str, Any]]:
    """The lineup's entries, each with the number it is shown under (`position`): what its
    clicks are compared at."""
    return [{**entry, "position": number} for entry, number in zip(entries, shown, strict=True)]


def as_sent(store: Store, issue: Issue) -> Issue:
    """The issue as its links will read once sent: a draft gets the id it will be stored under
    (its "View in browser" link then works once it goes out), a frozen issue stays as it is."""
    return issue if issue.id else replace(issue, id=store.next_issue_id())


@dataclass
class Preview:
    """What a sample reader (or, with --as, one chosen subscriber) would get."""

    issue: Issue
    subject: str
    html: str  # with `notice` shown at the top
    text: str  # with `notice` as its first lines
    headers: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # the reader's marker values
    notice: str = ""  # who the preview is for, and whether its links work
    envelope: Envelope | None = None


def preview(
    store: Store,
    settings: Settings,
    window: Window,
    top: int | None,
    list_name: str | None = None,
    note: str | None = None,
    *,
    as_email: str | None = None,
    topics: Sequence[str] | None = None,
    dry_run: bool = False,
) -> Preview:
    """The issue as a made-up sample reader gets it, whose links do nothing; with `as_email`,
    as that subscriber gets it, their working links included (the notice says so); with
    `topics` ([selection] personalize), as a reader who chose them gets it.
    `note`: --note; `dry_run`: without making the token secret in the store if there is none."""
    draft = current_issue(store, settings, window, top, note)
    issue = as_sent(store, draft)
    person = None
    number = 0
    if as_email is not None:
        person = store.subscriber_by_email(as_email)
        if person is None:
            raise SubscriberError(
                f"--as: no subscriber with address {as_email}",
                "check the spelling, or run 'digest subscribers list'",
            )
        number = reader_variant(store, issue, person)
    elif topics is not None:
        issue, number = topics_variant(store, settings, window, top, issue, topics)
    shown = preview_of(store, settings, issue, list_name or settings.list, number, person, dry_run)
    if not draft.id:  # a draft stays one (its links already read as they will once sent)
        shown.issue = replace(shown.issue, id=0)
    return shown


def reader_variant(store: Store, issue: Issue, person: Subscriber) -> int:
    """The variant `person` gets: the one recorded in the ledger once their copy was
    enqueued (it never changes), else the one their topics give."""
    if issue.variants and person.id is not None:
        recorded = store.delivery_variant(issue.id, person.id)
        if recorded is not None:
            return recorded
    return issue.variant_of(topics_key(person.topics))


def topics_variant(
    store: Store,
    settings: Settings,
    window: Window,
    top: int | None,
    issue: Issue,
    topics: Sequence[str],
) -> tuple[Issue, int]:
    """(the issue, the variant) a reader who chose `topics` gets. A set nobody has chosen yet
    gets its own lineup while the issue is a draft; once frozen, the general one."""
    found, unknown = match_topics(settings.topics, topics)
    if unknown:
        raise DigestError(
            f"--topics: unknown topic {unknown[0]!r}",
            f"choose among [topics] choices: {', '.join(settings.topics) or 'none declared'}",
        )
    key = topics_key(found)
    number = issue.variant_of(key)
    if number or not key or key in issue.general_sets or store.issue_by_label(issue.label):
        return issue, number
    ranking = rank_window(store, settings, window, top)
    general = ranking.lineup()
    picks, rendered = variant_for_topics(settings, ranking, general, issue.number, found)
    if rendered is None:
        return issue, 0
    number = max((v.number for v in issue.variants), default=0) + 1
    made = Lineup(window=general.window, stories=[p.candidate.story for p in picks])
    extra = Variant(number, found, lineup_json(made), rendered, [key])
    return replace(issue, variants=[*issue.variants, extra]), number


def preview_of(
    store: Store,
    settings: Settings,
    issue: Issue,
    list_name: str,
    number: int = 0,
    person: Subscriber | None = None,
    dry_run: bool = False,
) -> Preview:
    """Variant `number` of `issue` as `person` gets it, or as the sample reader."""
    shown = issue.variant(number)
    maker = EnvelopeMaker(
        shown, list_name, settings, token_secret(store, settings, dry_run=dry_run)
    )
    which = ""
    if issue.variants or number:
        topics = next((v.topics for v in issue.variants if v.number == number), [])
        which = (
            f" [variant {number}: topics {', '.join(topics)}]"
            if number
            else " [variant 0: the general lineup]"
        )
    if person is None:
        envelope = maker.sample(SAMPLE_SUBSCRIBER)
        notice = (
            f"Preview as a sample reader ({SAMPLE_SUBSCRIBER.email}), not a real subscriber: "
            f"the address is made up and the unsubscribe and preferences links do nothing.{which}"
        )
    else:
        envelope = maker(person)
        notice = (
            f"Preview for subscriber {person.email}: these links are theirs and work "
            f"(one click unsubscribes them). Do not share this preview.{which}"
        )
    email_html, email_text = render_preview(shown.rendered, envelope.values)
    return Preview(
        issue=shown,
        subject=shown.rendered.subject,
        html=with_notice(email_html, notice),
        text=f"[{notice}]\n\n{email_text}",
        headers=envelope.headers,
        values=envelope.values,
        notice=notice,
        envelope=envelope,
    )


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def with_notice(email_html: str, notice: str) -> str:
    """The email's HTML with `notice` in a banner at the top of its body."""
    banner = (
        '<div style="background:#fff3c4;color:#3d3000;border-bottom:2px solid #e0b400;'
        'padding:10px 16px;font:14px/1.4 -apple-system,Segoe UI,Roboto,Arial,sans-serif;" '
        f'role="note">{html.escape(notice)}</div>'
    )
    match = _BODY.search(email_html)
    if match is None:
        return banner + email_html
    return email_html[: match.end()] + banner + email_html[match.end() :]


def check(store: Store, settings: Settings, window: Window, top: int | None) -> CheckReport:
    """Lint the window's issue as it would go out: every variant of it, and its topics."""
    return check_all(store, settings, preview(store, settings, window, top), settings.list)


def check_all(
    store: Store, settings: Settings, sample: Preview, list_name: str, dry_run: bool = False
) -> CheckReport:
    """`_check` of the general lineup's preview and of every variant's (size, links,
    unsubscribe: each is its own email), plus [topics] choices that name nothing known."""
    report = _check(sample, settings)
    issue = as_sent(store, sample.issue)
    for variant in issue.variants:
        other = _check(
            preview_of(store, settings, issue, list_name, variant.number, dry_run=dry_run),
            settings,
        )
        where = f"variant {variant.number} ({', '.join(variant.topics)}): "
        report.errors.extend(where + e for e in other.errors if e not in report.errors)
        report.warnings.extend(where + w for w in other.warnings if w not in report.warnings)
        report.html_bytes = max(report.html_bytes, other.html_bytes)
    report.errors.extend(unknown_topics(store, settings))
    report.ok = not report.errors
    return report


def unknown_topics(store: Store, settings: Settings) -> list[str]:
    """[topics] choices that are neither a section nor a stored source's name: errors."""
    if not settings.topics:
        return []
    known = {name.strip().casefold() for name in settings.sections}
    known |= {name.strip().casefold() for name in settings.source_names.values()}
    known |= {name.casefold() for name in store.source_and_section_names()}
    return [
        f"[topics] choices: {choice!r} is neither a section nor a source: no story can have "
        "it (fix the spelling: sections are [newsletter] sections, sources are named as "
        "'digest articles' shows them, or name one in [sources.names])"
        for choice in settings.topics
        if choice.strip().casefold() not in known
    ]


def _check(sample: Preview, settings: Settings) -> CheckReport:
    """The lint of a previewed issue: the message as a subscriber gets it, and its lineup."""
    issue = sample.issue
    return check_issue(
        issue.rendered,
        len(issue.lineup),
        settings,
        sample.headers,
        sample.values,
        lineup=issue.lineup,
        since=issue.since,
    )


@dataclass
class SendPlan:
    """What `digest send` is about to do, shown before it asks."""

    issue: Issue
    list_name: str
    backend: str
    recipients: int  # active members of the list
    check: CheckReport
    frozen: bool  # the issue was already (partly) sent: its content will not change
    ingested: IngestReport | None = None  # the configured sources, read first
    suppressions: str | None = None  # SendGrid's suppressions, pulled first (a summary line)

    @property
    def stories(self) -> list[dict[str, Any]]:
        """The lineup that goes out."""
        return self.issue.lineup


def plan_send(
    store: Store,
    settings: Settings,
    window: Window,
    top: int | None,
    list_name: str | None,
    *,
    gather: bool = True,
    dry_run: bool = False,
    note: str | None = None,
) -> SendPlan:
    """Gather the configured sources, build (or load) the issue and count who would get it.

    dry_run: read only: no sources gathered, no suppressions pulled, nothing written.
    """
    list_name = list_name or settings.list
    ingested = None
    if gather and not dry_run and settings.sources and store.issue_by_label(window.label) is None:
        ingested = ingest_sources(store, settings, ())
    synced = None
    if settings.backend == "sendgrid" and not dry_run:
        synced = pull_suppressions(store, settings)
    sample = preview(store, settings, window, top, list_name, note, dry_run=dry_run)
    report = check_all(store, settings, sample, list_name, dry_run)
    return SendPlan(
        issue=sample.issue,
        list_name=list_name,
        backend=settings.backend,
        recipients=store.count_active(list_name),
        check=report,
        frozen=sample.issue.id != 0,
        ingested=ingested,
        suppressions=synced,
    )


def pull_suppressions(store: Store, settings: Settings) -> str | None:
    """Apply SendGrid's suppressions before a send; a failure is reported, not fatal."""
    from digest.suppressions import sync_sendgrid

    if not settings.sendgrid_api_key:
        return None  # the sender itself says the key is missing
    try:
        return sync_sendgrid(store, settings).line()
    except SendError as e:
        return f"not synced: {e.message}"


def send(
    store: Store,
    settings: Settings,
    plan: SendPlan,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress | None = None,
    resend_unknown: bool = False,
    retry_failed: bool = False,
    send_at: datetime | None = None,
    wait: bool = False,
    waiting: Callable[[Lease], None] | None = None,
    processes: int = 1,
) -> DeliveryReport:
    """Take the send's lease, check the sender, freeze the issue (first send only) and
    deliver it. A run that delivered nothing gives the issue (and its number) back.

    wait: wait for another run holding the issue and list instead of refusing (`waiting`
    hears who holds it, once). processes: worker processes to send with (PostgreSQL; see
    digest/delivery/workers.py), which `digest worker` on other machines may join.
    """
    if processes > 1 and not dry_run and (send_at is not None or resend_unknown):
        raise SendError(
            f"--workers cannot be combined with {'--send-at' if send_at else '--resend-unknown'}",
            "send those with one process (without --workers)",
        )
    if len(plan.stories) < settings.min_stories and not plan.frozen and not force:
        raise SendError(
            f"the lineup has {len(plan.stories)} stories, fewer than [selection] min_stories "
            f"({settings.min_stories})",
            "ingest more articles or widen the window (--since), lower min_stories in "
            "digest.toml, or pass --force to send anyway",
        )
    if not plan.check.ok and not force:
        raise SendError(
            f"the issue failed the check: {'; '.join(plan.check.errors)}",
            "fix what 'digest check' reports, or pass --force to send anyway",
        )
    if plan.recipients == 0:
        raise SendError(
            f"list {plan.list_name!r} has no active subscribers",
            "import some with 'digest subscribers import FILE.csv --list "
            f"{plan.list_name}', or pick another list with --list",
        )
    sender = make_sender(settings, dry_run=dry_run)
    if dry_run:
        return deliver(
            store, plan.issue, plan.list_name, sender, settings,
            dry_run=True, progress=progress, send_at=send_at,
        )  # fmt: skip
    with SendLease(store, plan.issue.label, plan.list_name, settings.lease_seconds) as lease:
        lease.acquire(wait=wait, waiting=waiting)
        sender.preflight()  # before the issue is frozen: a run that cannot send keeps it
        issue = freeze(store, store.issue_by_label(plan.issue.label) or replace(plan.issue, id=0))
        try:
            if processes > 1:
                report = coordinate(
                    store, settings, issue, plan.list_name, sender, lease, processes,
                    retry_failed=retry_failed,
                )  # fmt: skip
            else:
                report = deliver(
                    store,
                    issue,
                    plan.list_name,
                    sender,
                    settings,
                    progress=progress,
                    resend_unknown=resend_unknown,
                    retry_failed=retry_failed,
                    send_at=send_at,
                    lease=lease,
                )
        except BaseException:
            store.withdraw_unsent_issue(issue.id)
            raise
        if not (report.sent or report.unknown or report.scheduled):
            if store.withdraw_unsent_issue(issue.id):
                report.withdrawn = issue.number
        return report


def freeze(store: Store, draft: Issue) -> Issue:
    """Store a draft issue once; from then on every send of it is identical."""
    if draft.id:
        return draft
    # The editor's pins and drops belong to it now, in the same transaction.
    return store.freeze_issue(
        draft.label,
        draft.since,
        draft.until,
        draft.lineup,
        draft.rendered,
        draft.number,
        note=draft.note,
        variants=draft.variants,
        general_sets=draft.general_sets,
    )


@dataclass
class SummaryRecord:
    """`digest summarize` output for one article."""

    origin: str
    title: str
    summary: str
    sentences: list[str]


def summarize_sources(
    settings: Settings, specs: Sequence[str], sentences: int | None
) -> tuple[list[SummaryRecord], list[SourceFailure]]:
    """Summarize articles read from files or URLs, storing nothing."""
    records: list[SummaryRecord] = []
    failures: list[SourceFailure] = []
    for spec in specs:
        result = read_source(
            spec,
            tz=settings.tz,
            mapping=settings.source_mapping,
            allow_private=settings.allow_private_addresses,
            timeout=settings.fetch_timeout,
        )
        failures.extend(result.failures)
        for article in result.articles:
            chosen = summarize(
                article,
                sentences=sentences or settings.summary_sentences,
                budget=settings.summary_chars,
                language=settings.language,
            )
            records.append(
                SummaryRecord(
                    origin=article.origin,
                    title=article.title,
                    summary=chosen.text,
                    sentences=chosen.sentences,
                )
            )
    return records, failures


@dataclass
class InitReport:
    """What `digest init` wrote."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    subscribers: ImportReport | None = None


def init_folder(
    folder: Path, *, force: bool = False, database_url: str | None = None, today: date | None = None
) -> InitReport:
    """Write a ready-to-run newsletter folder: digest.toml, subscribers.csv, sample articles."""
    folder = folder.resolve()
    config = folder / CONFIG_NAME
    if config.exists() and not force:
        raise DigestError(
            f"{config} already exists",
            "run 'digest init' in an empty folder, or pass --force to overwrite the samples",
        )
    folder.mkdir(parents=True, exist_ok=True)
    report = InitReport(folder=folder)
    built_in = resources.files("digest.templates") / "init"
    for name in (CONFIG_NAME, "subscribers.csv"):
        with resources.as_file(built_in / name) as source:
            shutil.copyfile(source, folder / name)
        report.written.append(folder / name)
    report.written.extend(write_samples(folder / "articles", today or datetime.now(UTC).date()))
    settings = read_settings(config, overrides={"database_url": database_url})
    store = Store.open(settings.database_url)
    try:
        report.subscribers = import_csv(store, folder / "subscribers.csv", settings.list)
    finally:
        store.close()
    return report
