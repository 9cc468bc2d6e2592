"""The stages wired together: each function is one CLI command's work and returns a report."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from digest.check import CheckReport, check_issue
from digest.delivery.ledger import DeliveryReport, Progress, deliver
from digest.delivery.message import envelope_for
from digest.delivery.senders import make_sender
from digest.editorial import rank_window
from digest.errors import DigestError, SendError, SourceError
from digest.ingest import IngestReport, ingest
from digest.ingest import Progress as IngestProgress
from digest.models import Issue, Lineup, Subscriber, Window
from digest.render import render_issue, render_preview
from digest.selection import lineup_json
from digest.settings import CONFIG_NAME, Settings, read_settings
from digest.sources import SourceFailure, read_source
from digest.sources.samples import write_samples
from digest.store import Store
from digest.subscribers import ImportReport, first_active, import_csv
from digest.summarize import summarize

SAMPLE_SUBSCRIBER = Subscriber(email="subscriber@example.com", name="Sample Subscriber", id=0)


def is_url(spec: str) -> bool:
    """Whether a source is a URL rather than a path."""
    return spec.startswith(("http://", "https://"))


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
    )


def article_records(
    store: Store, settings: Settings, window: Window | None
) -> list[dict[str, Any]]:
    """Stored articles (in a window, or all) as the `digest articles --json` records."""
    found = (
        store.all_articles()
        if window is None
        else store.articles_between(window.since, window.until)
    )
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
    lineup = build_lineup(store, settings, window, top)
    number = store.next_issue_number()
    return Issue(
        id=0,
        number=number,
        label=window.label,
        since=window.since,
        until=window.until,
        lineup=lineup_json(lineup),
        rendered=render_issue(lineup, settings, number),
        created_at=datetime.now(UTC),
        note=settings.note if settings.note.strip() else "",
    )


def sample_subscriber(store: Store, list_name: str) -> Subscriber:
    """Who the preview is filled in for: the list's first active member, else a made-up one."""
    email = first_active(store, list_name)  # one row, not the whole list
    person = store.subscriber_by_email(email) if email else None
    return person if person is not None else SAMPLE_SUBSCRIBER


@dataclass
class Preview:
    """What a sample subscriber would get."""

    issue: Issue
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # the sample subscriber's values


def preview(
    store: Store,
    settings: Settings,
    window: Window,
    top: int | None,
    list_name: str | None = None,
    note: str | None = None,
) -> Preview:
    """The issue as a sample subscriber of the list would receive it (`note`: --note)."""
    issue = current_issue(store, settings, window, top, note)
    list_name = list_name or settings.list
    envelope = envelope_for(
        issue,
        sample_subscriber(store, list_name),
        list_name,
        settings,
        settings.secret or store.secret(),
    )
    return Preview(
        issue=issue,
        subject=issue.rendered.subject,
        html=render_preview(issue.rendered, envelope.values)[0],
        text=render_preview(issue.rendered, envelope.values)[1],
        headers=envelope.headers,
        values=envelope.values,
    )


def check(store: Store, settings: Settings, window: Window, top: int | None) -> CheckReport:
    """Lint the window's issue as it would go out."""
    sample = preview(store, settings, window, top)
    return check_issue(
        sample.issue.rendered, len(sample.issue.lineup), settings, sample.headers, sample.values
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
    note: str | None = None,
) -> SendPlan:
    """Gather the configured sources, build (or load) the issue and count who would get it."""
    list_name = list_name or settings.list
    ingested = None
    if gather and settings.sources and store.issue_by_label(window.label) is None:
        ingested = ingest_sources(store, settings, ())
    synced = pull_suppressions(store, settings) if settings.backend == "sendgrid" else None
    sample = preview(store, settings, window, top, list_name, note)
    report = check_issue(
        sample.issue.rendered, len(sample.issue.lineup), settings, sample.headers, sample.values
    )
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
    send_at: datetime | None = None,
) -> DeliveryReport:
    """Freeze the issue (first send only) and deliver it through the configured sender."""
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
    issue = plan.issue if dry_run else freeze(store, plan.issue)
    sender = make_sender(settings, dry_run=dry_run)
    return deliver(
        store,
        issue,
        plan.list_name,
        sender,
        settings,
        dry_run=dry_run,
        progress=progress,
        resend_unknown=resend_unknown,
        send_at=send_at,
    )


def freeze(store: Store, draft: Issue) -> Issue:
    """Store a draft issue once; from then on every send of it is identical."""
    if draft.id:
        return draft
    try:
        # The editor's pins and drops belong to it now, in the same transaction.
        return store.create_issue(
            draft.label,
            draft.since,
            draft.until,
            draft.lineup,
            draft.rendered,
            draft.number,
            with_picks=True,
            note=draft.note,
        )
    except sa.exc.IntegrityError:
        # Another run froze it first: use theirs, so both send the same thing.
        frozen = store.issue_by_label(draft.label)
        if frozen is None:
            raise
        return frozen


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
        result = read_source(spec, tz=settings.tz, mapping=settings.source_mapping)
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
