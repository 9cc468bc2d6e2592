"""The `digest` command line: parse, call one library function, print."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest.errors import DigestError

if TYPE_CHECKING:
    from digest.models import Window
    from digest.settings import Settings
    from digest.store import Store

# Each command imports what it needs in its body: `digest --help` and `digest status` start
# without loading the pipeline, templates, feeds or HTTP clients (bench/startup.py).

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """What every command shares: settings and store, loaded on first use."""

    def __init__(self, config: str | None, db: str | None, debug: bool) -> None:
        self.config = config
        self.debug = debug
        self.overrides: dict[str, Any] = {"database_url": db}
        self._settings: Settings | None = None
        self._read_with: dict[str, Any] = {}
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        """The layered settings, built and validated once: a command sets its flags in
        `overrides` before it first reads them."""
        if self._settings is None:
            from digest.settings import read_settings

            self._settings = read_settings(self.config, overrides=self.overrides)
            self._read_with = dict(self.overrides)
        elif self.overrides != self._read_with:  # a flag set too late would be ignored
            late = sorted(k for k in self.overrides if self.overrides[k] != self._read_with.get(k))
            raise RuntimeError(f"settings were read before {', '.join(late)} was set")
        return self._settings

    @property
    def store(self) -> Store:
        """The open store."""
        if self._store is None:
            from digest.store import Store

            # The send's threads, its page reader and its lease's heartbeat, at once.
            self._store = Store.open(self.settings.database_url, self.settings.workers + 3)
        return self._store

    def close(self) -> None:
        """Release the store."""
        if self._store is not None:
            self._store.close()

    def secrets(self) -> list[str]:
        """The secret values among the settings once read (API key, passwords), to mask."""
        if self._settings is None:
            return []
        from digest.settings import SECRET_FIELDS

        values = (getattr(self._settings, name) for name in sorted(SECRET_FIELDS))
        return [value for value in values if isinstance(value, str) and len(value) >= 4]

    def window(self, week: str | None, since: str | None, until: str | None) -> Window:
        """The window the window options name."""
        from digest.selection import parse_window

        return parse_window(week, since, until, self.settings.tz)


class DigestGroup(click.Group):
    """A group that turns DigestError into one clean line plus its fix."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as e:
            if _debug(ctx):
                raise
            raise UserError(e.message, e.hint) from e
        except Exception as e:
            problem = _database_problem(e)
            if problem is None or _debug(ctx):
                raise
            if "database is locked" in problem:
                from digest.store.sending import LOCKED_HINT

                raise UserError("the database is locked: database is locked", LOCKED_HINT) from e
            if "readonly database" in problem or "read-only transaction" in problem:
                raise UserError(
                    f"the database is read-only: {problem}",
                    "make digest.db and its folder writable (or connect as a user who may "
                    "write), or choose another database with --db / DIGEST_DATABASE_URL",
                ) from e
            raise UserError(
                f"database error: {problem}",
                "check the database URL (--db / DIGEST_DATABASE_URL) and that it is reachable",
            ) from e


def _database_problem(error: Exception) -> str | None:
    """The first line of a database driver's error; None for any other error."""
    if "sqlalchemy" not in sys.modules:  # nothing opened a database: not a database error
        return None
    from digest.store import database_problem

    return database_problem(error)


def _log_to_stderr(app: App | None) -> None:
    """-v: digest's log records on standard error, one line each, secrets masked; without
    it, no handler of ours (a warning still reaches Python's last-resort handler)."""
    logger = logging.getLogger("digest")
    for old in [h for h in logger.handlers if isinstance(h, _Masked)]:
        logger.removeHandler(old)
    logger.setLevel(logging.NOTSET)
    if app is None:
        return
    handler = _Masked(app)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _Masked(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current standard error, with every configured secret replaced by ***."""

    def __init__(self, app: App) -> None:
        super().__init__(sys.stderr)
        self.app = app

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.app.secrets():
            text = text.replace(secret, "***")
        return text


def _debug(ctx: click.Context) -> bool:
    app = ctx.find_object(App)
    return bool(app and app.debug)


class UserError(click.ClickException):
    """`Error: …` on stderr, then the hint; exit status 1."""

    def __init__(self, message: str, hint: str | None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        out = file or sys.stderr
        click.echo(f"Error: {self.format_message()}", file=out)
        if self.hint:
            click.echo(f"Hint: {self.hint}", file=out)


def _unwritable(path: Path, error: OSError) -> UserError:
    return UserError(
        f"cannot write {path}: {error.strerror or error}",
        "create the folder first, or pass a path in an existing folder",
    )


def window_options(func: F) -> F:
    """--week / --since / --until."""
    func = click.option(
        "--until",
        metavar="DATE",
        help="End of the window (exclusive time, or the whole day for a date).",
    )(func)
    func = click.option("--since", metavar="DATE", help="Start of the window (YYYY-MM-DD).")(func)
    return click.option("--week", metavar="YYYY-Www", help="An ISO week, e.g. 2025-W14.")(func)


def voice_options(func: F) -> F:
    """--note / --subject / --preheader: the editor's words for this issue."""
    func = click.option(
        "--preheader",
        metavar="TEMPLATE",
        help="The inbox preview text (instead of [newsletter] preheader).",
    )(func)
    func = click.option(
        "--subject", metavar="TEMPLATE", help="The subject line (instead of [newsletter] subject)."
    )(func)
    return click.option(
        "--note",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="An editor's note in Markdown (instead of [newsletter] note).",
    )(func)


def json_option(func: F) -> F:
    """--json."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def echo_json(data: Any) -> None:
    """Print JSON for scripts."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Settings file (default: ./digest.toml if present).",
)
@click.option(
    "--db",
    metavar="URL",
    help="Database URL (default: sqlite:///digest.db beside the config). Also DIGEST_DATABASE_URL.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log fetches, retries and batches on standard error."
)
@click.version_option(package_name="digest")
@click.pass_context
def cli(ctx: click.Context, config: str | None, db: str | None, debug: bool, verbose: bool) -> None:
    """digest: gather the week's articles, pick the top stories and send them, exactly once.

    \b
    A week with digest:
      digest init my-newsletter && cd my-newsletter
      digest ingest                 # read the sources in digest.toml
      digest select                 # the lineup
      digest preview --out issue.html
      digest check
      digest send
      digest status
    """
    app = App(config, db, debug)
    ctx.obj = app
    _log_to_stderr(app if verbose else None)
    ctx.call_on_close(app.close)


@cli.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing digest.toml and samples.")
@click.pass_obj
def init(app: App, folder: Path, force: bool) -> None:
    """Set up a newsletter folder: digest.toml, subscribers.csv and sample articles.

    Imports the sample subscribers, so that 'digest ingest' and 'digest send' work at once.

    Example: digest init my-newsletter
    """
    from digest import pipeline

    report = pipeline.init_folder(folder, force=force, database_url=app.overrides["database_url"])
    for path in report.written:
        click.echo(f"wrote {path}")
    if report.subscribers is not None:
        click.echo(f"subscribers: {report.subscribers.line()}")
    click.echo(f"\nNext: cd {folder} && digest ingest && digest send")


@cli.command()
@click.argument("sources", nargs=-1)
@click.option(
    "--metrics",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A CSV of URL plus views, clicks and/or shares to store per article.",
)
@click.pass_obj
def ingest(app: App, sources: tuple[str, ...], metrics: Path | None) -> None:
    """Read articles from files, folders, feeds, OPML lists or URLs into the store.

    Without SOURCES, reads the [sources] paths of digest.toml.

    Example: digest ingest articles/ https://example.com/feed.xml --metrics stats.csv
    """
    from digest import pipeline
    from digest.progress import ProgressBar

    # A bar only where someone watches, and only once the ingest has taken a second.
    bar = ProgressBar("reading sources", delay=1.0) if sys.stderr.isatty() else None
    try:
        report = pipeline.ingest_sources(
            app.store, app.settings, sources, metrics=metrics, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    click.echo(report.line())
    if report.metrics is not None:
        click.echo(f"metrics: {report.metrics} rows stored")
    for line in report.date_lines(included=app.settings.undated == "include"):
        click.echo(line)
    for failure in report.failures:
        click.echo(f"{failure.source}: {failure.reason}")
    if report.failures:
        sys.exit(1)


@cli.command()
@window_options
@click.option(
    "--undated",
    is_flag=True,
    help="Only the articles without a date of their own (kept out of the lineup unless pinned).",
)
@json_option
@click.pass_obj
def articles(
    app: App,
    week: str | None,
    since: str | None,
    until: str | None,
    undated: bool,
    as_json: bool,
) -> None:
    """List stored articles (all, or those of a window).

    Example: digest articles --week 2025-W14 --json
    """
    from digest import pipeline

    window = app.window(week, since, until) if (week or since or until) else None
    records = pipeline.article_records(app.store, app.settings, window, undated_only=undated)
    if as_json:
        echo_json(records)
        return
    for r in records:
        day = "no date   " if r["undated"] else (r["published"] or "")[:10]
        click.echo(f"{r['id']:>5}  {day}  {r['title']}")
        click.echo(f"       {r['source'] or '-'}  {r['url'] or r['origin']}")
        if r["date_note"]:
            click.echo(f"       no date: {r['date_note']}")
    if undated:
        click.echo(
            f"{len(records)} article{'s' if len(records) != 1 else ''} without a date: kept out "
            "of the lineup; 'digest pin URL' brings one in, [selection] undated = \"include\" all"
        )
        return
    click.echo(f"{len(records)} articles")


@cli.command()
@window_options
@click.option("--top", type=click.IntRange(min=1), help="How many stories (default 10).")
@click.option(
    "--explain",
    is_flag=True,
    help=(
        "Every story of the window with its score's components and why it is in or out, "
        "then the articles left out for having no date, with how to pin them in."
    ),
)
@click.option(
    "--for",
    "for_email",
    metavar="EMAIL",
    help="Why each story is in this subscriber's issue (their topics; [selection] personalize).",
)
@json_option
@click.pass_obj
def select(
    app: App,
    week: str | None,
    since: str | None,
    until: str | None,
    top: int | None,
    explain: bool,
    for_email: str | None,
    as_json: bool,
) -> None:
    """Show the lineup: the window's top stories, ranked and summarized.

    The score is source_weight × (0.45 popularity + 0.30 coverage + 0.20 completeness
    + 0.05 recency); pins go first, drops stay out (digest pin / digest drop).

    Example: digest select --week 2025-W14 --top 5 --explain
    """
    from digest import pipeline
    from digest.editorial import rank_window
    from digest.learning import learned_line
    from digest.selection import lineup_json, ranking_json

    window = app.window(week, since, until)
    if for_email is not None:
        from digest.variants import explain_for

        mine = explain_for(app.store, app.settings, window, top, for_email)
        if as_json:
            echo_json(mine)
            return
        click.echo(f"Lineup of {for_email} for {window.label} ({len(mine)} stories)")
        for s in mine:
            click.echo(f"{s['rank']:>3}. {s['title']}  [{s['source'] or '-'}]  {s['reason']}")
        return
    if explain:
        stories = ranking_json(rank_window(app.store, app.settings, window, top))
    else:
        stories = lineup_json(pipeline.build_lineup(app.store, app.settings, window, top))
    if as_json:
        echo_json(stories)
        return
    chosen = sum(1 for s in stories if s["rank"] is not None)
    click.echo(f"Lineup for {window.label} ({chosen} stories)")
    for s in stories:
        day = "no date" if s["date_flag"] == "missing" else (s["published"] or "")[:10]
        click.echo(
            f"{s['rank'] or '-':>3}. {s['title']}  [{s['source'] or '-'}, "
            f"{day}, score {s['score']}]" + (f"  {s['reason']}" if explain else "")
        )
        if explain and s["components"]:
            c = s["components"]
            # The story's metric sums over its articles, those the window has.
            sums = ", ".join(f"{c[k]:,.0f} {k}" for k in ("views", "clicks", "shares") if k in c)
            click.echo(
                f"     popularity {c['popularity']:.2f}{f' ({sums})' if sums else ''} · "
                f"coverage {c['coverage']:.2f} "
                f"({c['sources']:.0f} source{'s' if c['sources'] != 1 else ''}) · "
                f"recency {c['recency']:.2f} · "
                f"completeness {c['completeness']:.2f} · source weight {c['source_weight']:g}"
            )
            if "learned_weight" in c:
                click.echo(f"     {learned_line(c)}")
            for other in s["also"]:
                click.echo(f"     also: {other['source'] or '-'}: {other['title']}")
        if s["summary"]:
            click.echo(f"     {s['summary']}")


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--sentences", type=click.IntRange(min=1), help="Sentences per summary.")
@json_option
@click.pass_obj
def summarize(app: App, sources: tuple[str, ...], sentences: int | None, as_json: bool) -> None:
    """Summarize articles from files or URLs, without storing them.

    Example: digest summarize article.txt --sentences 2
    """
    from digest import pipeline

    records, failures = pipeline.summarize_sources(app.settings, sources, sentences)
    if as_json:
        echo_json([asdict(r) for r in records])
    else:
        for r in records:
            click.echo(f"{r.title}\n  {r.summary}\n")
    for failure in failures:
        click.echo(f"{failure.source}: {failure.reason}", err=True)
    if failures:
        sys.exit(1)


@cli.command()
@window_options
@click.option("--top", type=click.IntRange(min=1), help="How many stories.")
@click.option("--list", "list_name", help="The list whose sample subscriber fills it in.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option("--text", is_flag=True, help="The plain-text part instead of the HTML.")
@voice_options
@click.option("--serve", is_flag=True, help="Serve a live preview page on 127.0.0.1.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="The port for --serve.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the --serve page in a browser.")
@click.option(
    "--as",
    "as_email",
    metavar="EMAIL",
    help="As this subscriber gets it, their working links included (default: a sample reader).",
)
@click.option(
    "--topics",
    metavar="A,B",
    help="As a reader who chose these [topics] gets it ([selection] personalize).",
)
@click.pass_obj
def preview(
    app: App,
    week: str | None,
    since: str | None,
    until: str | None,
    top: int | None,
    list_name: str | None,
    out: Path | None,
    text: bool,
    note: Path | None,
    subject: str | None,
    preheader: str | None,
    serve: bool,
    port: int,
    open_browser: bool,
    as_email: str | None,
    topics: str | None,
) -> None:
    """Write the HTML (or text part) a sample reader would get, or serve a live preview.

    The sample reader's address is made up and its links do nothing, so a preview can be
    shared; --as EMAIL shows one subscriber's copy, their working links included. Either
    way a notice at the top says whose copy it is.

    --serve shows the issue at desktop and mobile width, light and dark, its text part,
    headers and size, and reloads by itself when a template, the settings or the lineup
    changes.

    With [selection] personalize, --topics "Science Notes,Technology" shows the copy of a
    reader who chose those topics (--as shows the one that subscriber gets).

    Example: digest preview --out issue.html; digest preview --serve --open
    """
    from digest import pipeline
    from digest.render import read_note

    if serve and as_email:
        raise click.UsageError("--as shows one subscriber's copy in a file, not with --serve")
    if as_email and topics is not None:
        raise click.UsageError("--as and --topics each choose whose copy: give one of them")
    app.overrides.update(subject=subject, preheader=preheader)
    if serve:
        from digest import preview as live

        live.serve(
            app.config,
            app.overrides,
            {"week": week, "since": since, "until": until, "top": top, "list_name": list_name},
            port=port,
            open_browser=open_browser,
            note_file=note,
            ready=lambda url: click.echo(f"Previewing at {url} (Ctrl-C stops)"),
        )
        return
    result = pipeline.preview(
        app.store,
        app.settings,
        app.window(week, since, until),
        top,
        list_name,
        read_note(note) if note is not None else None,
        as_email=as_email,
        topics=None if topics is None else [t for t in topics.split(",") if t.strip()],
    )
    body = result.text if text else result.html
    if out is None:
        click.echo(body, nl=False)
        return
    try:
        out.write_bytes(body.encode("utf-8"))  # the very bytes of the decoded MIME part
    except OSError as e:
        raise _unwritable(out, e) from e
    click.echo(f"wrote {out} ({len(body.encode('utf-8'))} bytes): {result.subject}")


@cli.command()
@window_options
@click.option("--top", type=click.IntRange(min=1), help="How many stories.")
@json_option
@click.pass_obj
def check(
    app: App, week: str | None, since: str | None, until: str | None, top: int | None, as_json: bool
) -> None:
    """Lint the rendered issue for what breaks inboxes; exit 1 on errors.

    Example: digest check --json
    """
    from digest import pipeline

    report = pipeline.check(app.store, app.settings, app.window(week, since, until), top)
    if as_json:
        echo_json(report.as_json())
    else:
        for error in report.errors:
            click.echo(f"error: {error}")
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        click.echo(
            f"{'ok' if report.ok else 'not ok'}: {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings, {report.html_bytes} bytes of HTML"
        )
    if not report.ok:
        sys.exit(1)


@cli.group()
def subscribers() -> None:
    """Import, list and unsubscribe subscribers."""


@subscribers.command("import")
@click.argument("csv_file", metavar="CSV", type=click.Path(path_type=Path))
@click.option("--list", "list_name", help="Add every row to this list too.")
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="The file's encoding if it has no byte-order mark, e.g. cp1252 (Excel on Windows).",
)
@click.pass_obj
def subscribers_import(app: App, csv_file: Path, list_name: str | None, encoding: str) -> None:
    """Import subscribers from a CSV file (columns: email, name, lists, status, …).

    A `topics` column lists [topics] choices separated by ';' (a row naming another fails).
    Bad rows are reported with their line number; the good rows are imported. UTF-8 unless
    --encoding says otherwise (UTF-16 with a byte-order mark is read as such).

    Example: digest subscribers import people.csv --list main --encoding cp1252
    """
    from digest.subscribers import import_csv

    report = import_csv(
        app.store, csv_file, app.settings.list, list_name, encoding, app.settings.topics
    )
    click.echo(report.line())
    for failure in report.failures:
        click.echo(f"{csv_file}:{failure.line}: {failure.reason}")
    if report.failures:
        sys.exit(1)


@subscribers.command("list")
@click.option("--list", "list_name", help="Only this list.")
@json_option
@click.pass_obj
def subscribers_list(app: App, list_name: str | None, as_json: bool) -> None:
    """List subscribers.

    Example: digest subscribers list --list main --json
    """
    people = app.store.subscribers(list_name)
    if as_json:
        echo_json(
            [
                {
                    "email": p.email,
                    "name": p.name,
                    "lists": p.lists,
                    "status": str(p.status),
                    "fields": p.fields,
                    "topics": p.topics,
                }
                for p in people
            ]
        )
        return
    for p in people:
        click.echo(f"{p.email:<40} {p.status:<13} {','.join(p.lists):<20} {p.name}")
    click.echo(f"{len(people)} subscribers")


@subscribers.command("show")
@click.argument("email")
@json_option
@click.pass_obj
def subscribers_show(app: App, email: str, as_json: bool) -> None:
    """Show one subscriber: status, lists and consent (when, where from, what was agreed to).

    Example: digest subscribers show ada@example.com --json
    """
    from digest.subscribers import subscriber_record

    record = subscriber_record(app.store, email)
    if as_json:
        echo_json(record.as_json())
        return
    for line in record.lines():
        click.echo(line)


@subscribers.command("unsubscribe")
@click.argument("email")
@click.pass_obj
def subscribers_unsubscribe(app: App, email: str) -> None:
    """Unsubscribe one address from everything.

    Example: digest subscribers unsubscribe ada@example.com
    """
    from digest.subscribers import unsubscribe

    person = unsubscribe(app.store, email)
    click.echo(f"{person.email} is now {person.status}")


@cli.command()
@window_options
@click.option("--top", type=click.IntRange(min=1), help="How many stories.")
@click.option("--list", "list_name", help="The subscriber list (default: [delivery] list).")
@click.option(
    "--backend",
    type=click.Choice(["outbox", "smtp", "sendgrid"]),
    help="How to send (default: [delivery] backend).",
)
@click.option("--outbox", type=click.Path(file_okay=False), help="Folder for outbox .eml files.")
@click.option("--no-ingest", is_flag=True, help="Do not read the configured sources first.")
@click.option("--dry-run", is_flag=True, help="Build every message, send and record nothing.")
@click.option("--force", is_flag=True, help="Send even if 'digest check' finds errors.")
@voice_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending.")
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Also send to those whose earlier delivery is 'unknown' (they may get it twice).",
)
@click.option(
    "--test-to", metavar="ADDRESS", help="Send one copy to this address only; record nothing."
)
@click.option(
    "--send-at", metavar="TIME", help="Schedule it (SendGrid), e.g. '2025-04-07 08:00', ≤ 72 h."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Also retry failures that were not the recipient's (a refused request, a setting).",
)
@click.option(
    "--wait", is_flag=True, help="If another run is sending this issue to the list, wait for it."
)
@click.option(
    "--workers",
    "processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Sending processes on this machine (PostgreSQL); 'digest worker' elsewhere joins them.",
)
@click.pass_obj
def send(
    app: App,
    week: str | None,
    since: str | None,
    until: str | None,
    top: int | None,
    list_name: str | None,
    backend: str | None,
    outbox: str | None,
    no_ingest: bool,
    dry_run: bool,
    force: bool,
    note: Path | None,
    subject: str | None,
    preheader: str | None,
    yes: bool,
    resend_unknown: bool,
    test_to: str | None,
    send_at: str | None,
    retry_failed: bool,
    wait: bool,
    processes: int,
) -> None:
    """Send the window's issue to a list, exactly once per subscriber.

    First reads the sources of digest.toml (unless --no-ingest or the issue was already
    sent). Running it again sends only to those who have not had the issue yet.

    Example: digest send --backend outbox --outbox out --yes
    """
    from digest import pipeline
    from digest.delivery.ledger import editor_address, send_test_copy
    from digest.delivery.progress import ProgressBar
    from digest.delivery.sendgrid.schedule import parse_send_at
    from digest.render import read_note

    if test_to:
        editor_address(test_to)  # before any work: a typo is found at once
    app.overrides.update(backend=backend, outbox=outbox, subject=subject, preheader=preheader)
    plan = pipeline.plan_send(
        app.store,
        app.settings,
        app.window(week, since, until),
        top,
        list_name,
        gather=not no_ingest,
        dry_run=dry_run,
        note=read_note(note) if note is not None else None,
    )
    if dry_run and not no_ingest and app.settings.sources:
        click.echo("dry run: sources not read (it writes nothing); 'digest ingest' reads them")
    if plan.ingested is not None:
        click.echo(f"ingest: {plan.ingested.line()}")
        for failure in plan.ingested.failures:
            click.echo(f"{failure.source}: {failure.reason}")
    if plan.suppressions is not None:
        click.echo(f"suppressions: {plan.suppressions}")
    click.echo(f"Issue #{plan.issue.number} ({plan.issue.label}): {plan.issue.rendered.subject}")
    if plan.frozen:
        click.echo("  (already sent before: the same content goes to those still waiting)")
    for story in plan.stories:
        click.echo(f"  {story['rank']:>2}. {story['title']}")
    click.echo(
        f"List {plan.list_name}: {plan.recipients} active subscribers; "
        f"backend {app.settings.backend}{' (dry run)' if dry_run else ''}"
    )
    for warning in plan.check.warnings:
        click.echo(f"warning: {warning}")
    for error in plan.check.errors:
        click.echo(f"error: {error}")
    if test_to:
        outcome = send_test_copy(
            app.store,
            app.settings,
            pipeline.as_sent(app.store, plan.issue),
            plan.list_name,
            test_to,
        )
        click.echo(
            f"test copy to {test_to}: {outcome.status}"
            + (f" ({outcome.error})" if outcome.error else "")
        )
        sys.exit(0 if outcome.status == "sent" else 1)
    when = parse_send_at(send_at, app.settings.tz, datetime.now(UTC)) if send_at else None
    if not (yes or dry_run):
        click.confirm("Send now?" if when is None else f"Schedule for {when}?", abort=True)
    if processes > 1 and not dry_run:
        from digest.delivery.workers import processes_for

        processes, sqlite_note = processes_for(app.store, processes)
        if sqlite_note:
            click.echo(sqlite_note)
    # A bar only where someone watches; scripts and logs get the summary line alone.
    bar = ProgressBar(plan.recipients, sys.stderr) if sys.stderr.isatty() else None
    report = pipeline.send(
        app.store,
        app.settings,
        plan,
        dry_run=dry_run,
        force=force,
        progress=bar,
        resend_unknown=resend_unknown,
        retry_failed=retry_failed,
        send_at=when,
        wait=wait,
        processes=processes,
        waiting=lambda held: click.echo(
            f"waiting: {held.holder} has been sending this issue to the list since "
            f"{held.acquired_at:%Y-%m-%d %H:%M:%S} UTC",
            err=True,
        ),
    )
    if bar is not None:
        bar.finish(report)
    click.echo(report.line())
    if report.workers > 1:
        click.echo(f"sent with {report.workers} worker processes" + _lost(report.workers_lost))
    if report.interrupted:
        click.echo(
            f"{report.interrupted} deliveries were interrupted by an earlier run and are "
            "now 'unknown' (see 'digest status')"
        )
    for line in report.failure_lines():
        click.echo(line)
    if report.unknown:
        click.echo(
            f"{report.unknown} deliveries are 'unknown': the provider may have them. "
            "'digest send --resend-unknown' sends them again (some may get it twice)"
        )
    if report.failed or report.unknown or report.deferred or report.interrupted:
        sys.exit(1)


def _lost(workers: int) -> str:
    if not workers:
        return ""
    return (
        f"; {workers} worker{'s' if workers > 1 else ''} stopped without finishing (lease "
        "expired or process gone): their requests in flight are 'unknown', the rest went to "
        "the others"
    )


@cli.command()
@click.option("--issue", "label", metavar="LABEL", help="The issue being sent, e.g. 2026-W49.")
@click.option("--list", "list_name", help="The list it is being sent to.")
@json_option
@click.pass_obj
def worker(app: App, label: str | None, list_name: str | None, as_json: bool) -> None:
    """Join a running 'digest send --workers N' as one more sending process (PostgreSQL).

    Run it on any machine that reaches the same database (DIGEST_DATABASE_URL), with the
    same sender settings; it claims pages of recipients until none are left.

    Example: DIGEST_DATABASE_URL=postgresql+psycopg://digest@db/news digest worker
    """
    from digest.delivery.workers import report_json, work

    report = work(app.store, app.settings, label=label, list_name=list_name)
    if as_json:
        echo_json(report_json(report))
    else:
        click.echo(report.line() + _lost(report.workers_lost))
        for line in report.failure_lines():
            click.echo(line)
    if report.failed or report.unknown or report.deferred:
        sys.exit(1)


@cli.command()
@click.option(
    "--issue", help="Only this issue (id or label), with its clicks per story ([tracking] clicks)."
)
@click.option(
    "--variants",
    is_flag=True,
    help="With --issue: each variant ([selection] personalize), its topics, readers, stories.",
)
@json_option
@click.pass_obj
def status(app: App, issue: str | None, variants: bool, as_json: bool) -> None:
    """Delivery counts per issue and list.

    Example: digest status --json; digest status --issue 2025-W14 --variants
    """
    from digest.delivery.live import live_sends

    if variants:
        if issue is None:
            raise click.UsageError("--variants needs --issue ID (the issue's number or label)")
        from digest.variants import issue_variants

        found_variants = issue_variants(app.store, issue)
        if as_json:
            echo_json(found_variants)
            return
        for v in found_variants:
            topics = ", ".join(v["topics"]) or "the general lineup"
            click.echo(
                f"variant {v['variant']} ({topics}): {v['subscribers']} subscribers, "
                f"{len(v['stories'])} stories"
            )
            for url in v["stories"]:  # a story read from a file may have no address
                click.echo(f"  {url or '(a story without a link)'}")
        return

    rows = app.store.status()
    stories: list[dict[str, Any]] | None = None
    if issue is not None:
        from digest.clicks import issue_clicks

        label, found = issue_clicks(app.store, issue)
        rows = [r for r in rows if r.issue == label]
        stories = [s.as_json() for s in found]
    live = {(s.label, s.list_name): s for s in live_sends(app.store)}
    if as_json:
        echo_json(
            [
                {
                    "issue": r.issue,
                    "number": r.number,
                    "list": r.list,
                    "sent": r.sent,
                    "failed": r.failed,
                    "pending": r.pending,
                    "sending": r.sending,
                    "unknown": r.unknown,
                    "delivered": r.delivered,
                    "opens": r.opens,
                    "clicks": r.clicks,
                    "bounces": r.bounces,
                    "complaints": r.complaints,
                    "unsubscribes": r.unsubscribes,
                    "live": live[(r.issue, r.list)].as_json()
                    if (r.issue, r.list) in live
                    else None,
                }
                | ({} if stories is None else {"stories": stories})
                for r in rows
            ]
        )
        return
    if not rows:
        click.echo("nothing sent yet")
    for r in rows:
        click.echo(
            f"#{r.number} {r.issue} [{r.list}]: {r.sent} sent, {r.failed} failed, "
            f"{r.pending} pending, {r.unknown} unknown"
            + (
                f"; {r.delivered} delivered, {r.opens} opens, {r.clicks} clicks, "
                f"{r.bounces} bounces, {r.complaints} complaints, {r.unsubscribes} unsubscribes"
                if r.delivered or r.opens or r.clicks or r.bounces or r.complaints or r.unsubscribes
                else ""
            )
        )
        if (r.issue, r.list) in live:
            for line in live[(r.issue, r.list)].lines():
                click.echo(f"  {line}")
    counted = app.settings.track_clicks or app.settings.backend == "sendgrid"
    if stories and not counted and not any(s["clicks"] for s in stories):
        click.echo(
            "  clicks per story are not counted: set [tracking] clicks = true (or send through "
            "SendGrid, whose click events count)"
        )
        stories = []
    for s in stories or []:

        def pct(rate: float | None) -> str:
            return "-" if rate is None else f"{rate:.1%}"

        click.echo(
            f"  {s['position']:>2}. {s['clicks']} clicks, {s['unique_clicks']} unique, "
            f"{pct(s['click_through'])} click-through (position average "
            f"{pct(s['position_average'])}): {s['title']}"
        )


@cli.group()
def db() -> None:
    """The database's schema version, and upgrading it after digest was upgraded."""


@db.command("current")
@json_option
@click.pass_obj
def db_current(app: App, as_json: bool) -> None:
    """Print the database's schema version and the one this digest needs.

    Example: digest db current
    """
    from digest.store import Store
    from digest.store.schema import HEAD as SCHEMA_HEAD

    found = Store.current(app.settings.database_url)
    if as_json:
        echo_json({"current": found, "head": SCHEMA_HEAD, "up_to_date": found == SCHEMA_HEAD})
        return
    if found is None:
        click.echo(f"empty database (the first command creates version {SCHEMA_HEAD})")
    elif found == SCHEMA_HEAD:
        click.echo(f"{found} (up to date)")
    else:
        click.echo(f"{found} (this digest needs {SCHEMA_HEAD}: run 'digest db upgrade')")


@db.command("upgrade")
@click.pass_obj
def db_upgrade(app: App) -> None:
    """Bring the database to this digest's schema version, keeping every row.

    Back up the database first (copy digest.db, or pg_dump).

    Example: cp digest.db digest.db.bak && digest db upgrade
    """
    from digest.store import Store

    before, after = Store.upgrade(app.settings.database_url)
    if before == after:
        click.echo(f"already at {after}")
    elif before is None:
        click.echo(f"created the schema at {after}")
    else:
        click.echo(f"upgraded from {before} to {after}")


def seconds_option(flag: str, default: float, what: str) -> Callable[[F], F]:
    """A --FLAG of seconds (0.1 to 600) for `what`."""
    return click.option(
        flag,
        default=default,
        show_default=True,
        type=click.FloatRange(0.1, 600),
        help=f"Seconds for {what}.",
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Connections open at once; more are closed as they arrive.",
)
@seconds_option("--header-timeout", 10.0, "a request's headers to arrive (then 30 s for its body)")
@seconds_option("--idle-timeout", 5.0, "a kept-alive connection to wait for its next request")
@click.pass_obj
def serve(
    app: App,
    host: str,
    port: int,
    max_connections: int,
    header_timeout: float,
    idle_timeout: float,
) -> None:
    """Run the web side: one-click unsubscribe (/u/TOKEN), preferences (/p/TOKEN),
    the archive (/archive, /issues/ID, /feed.xml) and SendGrid's event webhook.

    Put it behind your HTTPS proxy at [newsletter] base_url. With a [schedule], it also
    runs the clock (as 'digest schedule run' does) and answers the review links.

    Example: digest serve --port 8080
    """
    from digest.web import Limits
    from digest.web import serve as run_server

    limits = Limits(
        connections=max_connections, header_timeout=header_timeout, idle_timeout=idle_timeout
    )
    if app.settings.scheduled:  # the same clock as 'digest schedule run', beside the web side
        import threading

        from digest.schedule import run_forever

        stop = threading.Event()
        threading.Thread(
            target=run_forever,
            args=(app.store, app.settings, stop),
            name="digest-clock",
            daemon=True,
        ).start()
    run_server(app.settings, app.store, host, port, limits)


@cli.group()
def suppressions() -> None:
    """SendGrid's suppression lists: unsubscribes, group unsubscribes, bounces, spam reports."""


@suppressions.command("sync")
@json_option
@click.pass_obj
def suppressions_sync(app: App, as_json: bool) -> None:
    """Pull SendGrid's suppressions and stop mail to those addresses here too.

    'digest send' with the SendGrid backend does this first by itself.

    Example: SENDGRID_API_KEY=SG.… digest suppressions sync
    """
    from digest.suppressions import sync_sendgrid

    report = sync_sendgrid(app.store, app.settings)
    if as_json:
        echo_json(report.as_json())
    else:
        click.echo(report.line())


@cli.group()
def archive() -> None:
    """The public archive of sent issues as static files."""


@archive.command("build")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def archive_build(app: App, folder: Path) -> None:
    """Write the archive, each sent issue's web view and the Atom feed into FOLDER.

    Example: digest archive build public/
    """
    from digest.archive import build_archive

    click.echo(build_archive(app.store, app.settings, folder).line())


@cli.command()
@click.argument("url", required=False)
@click.option("--list", "show", is_flag=True, help="Show the pins and drops waiting.")
@click.pass_obj
def pin(app: App, url: str | None, show: bool) -> None:
    """Pin an article's story into the next issue, whatever its score.

    Pins and drops wait for the next issue that is not yet sent; undo with 'digest unpin'.

    Example: digest pin https://example.com/news/big-story
    """
    from digest.editorial import pending, pick

    if show:
        picks = pending(app.store)
        for key, action in picks:
            click.echo(f"{action:<5} {key}")
        click.echo(f"{len(picks)} picks for the next issue")
        return
    if not url:
        raise UserError("no URL given", "pass the article's URL, or --list to see the picks")
    click.echo(pick(app.store, url, "pin").line())


@cli.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--clear", is_flag=True, help="Forget the note waiting for the next issue.")
@click.pass_obj
def note(app: App, file: Path | None, clear: bool) -> None:
    """Write the editor's intro for the next issue, in Markdown (raw HTML is not kept).

    It waits for the next issue that is not yet sent, goes out with it and is kept with it
    (a one-off --note FILE on send or preview wins over it; it wins over [newsletter] note).
    Without FILE, shows the note waiting.

    Example: digest note intro.md
    """
    if clear and file is not None:
        raise UserError("--clear takes no FILE", "run 'digest note --clear' on its own")
    from digest.editorial import set_note

    report = set_note(app.store, file, clear=clear)
    click.echo(report.line())


@cli.command()
@click.argument("url")
@click.pass_obj
def drop(app: App, url: str) -> None:
    """Keep an article's story out of the next issue.

    Example: digest drop https://example.com/news/old-news
    """
    from digest.editorial import pick

    click.echo(pick(app.store, url, "drop").line())


@cli.command()
@click.argument("url")
@click.pass_obj
def unpin(app: App, url: str) -> None:
    """Forget a pin or a drop waiting for the next issue.

    Example: digest unpin https://example.com/news/big-story
    """
    from digest.editorial import unpick

    click.echo(unpick(app.store, url).line())


@subscribers.command("export")
@click.argument("csv_file", metavar="[FILE]", required=False, type=click.Path(path_type=Path))
@click.option("--list", "list_name", help="Only this list.")
@click.pass_obj
def subscribers_export(app: App, csv_file: Path | None, list_name: str | None) -> None:
    """Write subscribers as CSV (to FILE, or standard output); 'import' reads it back.

    Example: digest subscribers export --list main people.csv
    """
    from digest.subscribers import export_csv

    if csv_file is None:
        export_csv(app.store, sys.stdout, list_name)
        return
    try:
        out = csv_file.open("w", encoding="utf-8", newline="")
    except OSError as e:
        raise _unwritable(csv_file, e) from e
    with out:
        count = export_csv(app.store, out, list_name)
    click.echo(f"wrote {count} subscribers to {csv_file}")


@subscribers.command("counts")
@json_option
@click.pass_obj
def subscribers_counts(app: App, as_json: bool) -> None:
    """Members per list and status.

    Example: digest subscribers counts --json
    """
    from digest.subscribers import counts as subscriber_counts

    rows = subscriber_counts(app.store)
    if as_json:
        echo_json([{**asdict(r), "total": r.total} for r in rows])
        return
    click.echo(
        f"{'list':<20} {'active':>9} {'unsubscribed':>13} {'bounced':>8} "
        f"{'complained':>11} {'total':>9}"
    )
    for r in rows:
        click.echo(
            f"{r.list:<20} {r.active:>9} {r.unsubscribed:>13} {r.bounced:>8} "
            f"{r.complained:>11} {r.total:>9}"
        )


@cli.command()
@click.argument("issue")
@click.pass_obj
def cancel(app: App, issue: str) -> None:
    """Cancel the scheduled send of an issue (sent with --send-at, SendGrid).

    ISSUE is its label (e.g. 2025-W14) or number.

    Example: digest cancel 2025-W14
    """
    from digest.delivery.sendgrid.schedule import cancel as cancel_schedule

    click.echo(cancel_schedule(app.store, app.settings, issue).line())


@cli.command("sources")
@json_option
@click.pass_obj
def sources_(app: App, as_json: bool) -> None:
    """List the configured sources, and feeds seen, with last fetch, status and item count.

    Example: digest sources --json
    """
    from digest.ingest import source_rows

    rows = source_rows(app.store, app.settings)
    if as_json:
        echo_json([row.as_json() for row in rows])
        return
    if not rows:
        click.echo("no sources configured or read yet (list them under [sources] paths)")
    for row in rows:
        when = row.last_fetch.strftime("%Y-%m-%d %H:%M") if row.last_fetch else "-"
        mark = "" if row.configured else "  (not configured)"
        click.echo(f"{row.source}{mark}\n    last read {when}  {row.status}  {row.items} items")


# ---- Running on autopilot ([schedule]) ----------------------------------------------------


def now_option(func: F) -> F:
    """--now: run as if the clock showed this time (for trying a schedule out)."""
    return click.option(
        "--now",
        "now_text",
        metavar="TIME",
        help="Act as if it were this time, e.g. 2026-12-04T16:00 (the newsletter's zone).",
    )(func)


def _now(app: App, now_text: str | None) -> datetime | None:
    from digest.schedule import parse_now

    return None if now_text is None else parse_now(now_text, app.settings.tz)


@cli.group(invoke_without_command=True)
@json_option
@now_option
@click.pass_context
def schedule(ctx: click.Context, as_json: bool, now_text: str | None) -> None:
    """Show the next draft and send times of [schedule], and the last runs with their outcome.

    Example: digest schedule --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from digest.schedule import view

    app: App = ctx.obj
    shown = view(app.store, app.settings, _now(app, now_text))
    if as_json:
        echo_json(shown.as_json())
        return
    tz = app.settings.tz
    for kind, at in shown.upcoming:
        click.echo(f"next {kind}: {at.astimezone(tz):%a %Y-%m-%d %H:%M %Z}")
    click.echo(f"approval: {shown.approval}; editors: {', '.join(shown.editors) or '-'}")
    if not shown.runs:
        click.echo("no runs yet")
    for run in shown.runs:
        click.echo(
            f"{run.due_at.astimezone(tz):%Y-%m-%d %H:%M} {run.kind:<7} {run.label or '-':<10} "
            f"{run.outcome:<8} {run.holder}" + (f"  {run.detail}" if run.detail else "")
        )


@schedule.command("run")
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@now_option
@click.pass_obj
def schedule_run(app: App, once: bool, now_text: str | None) -> None:
    """Run the clock of [schedule] in the foreground: draft, review, send, each slot once.

    Example: digest schedule run --once --now 2026-12-04T16:00
    """
    import threading

    from digest.schedule import run_due, run_forever

    if now_text is not None and not once:
        raise click.UsageError("--now needs --once (the clock in the foreground keeps real time)")
    if once:
        for report in run_due(app.store, app.settings, _now(app, now_text)):
            click.echo(report.line())
        return
    stop = threading.Event()
    try:
        run_forever(app.store, app.settings, stop, heard=lambda r: click.echo(r.line()))
    except KeyboardInterrupt:
        stop.set()


@cli.command("draft")
@now_option
@click.pass_obj
def draft_(app: App, now_text: str | None) -> None:
    """Draft the next issue now and send the review copy to [schedule] editors.

    Example: digest draft
    """
    from digest.review import draft_by_hand

    report = draft_by_hand(app.store, app.settings, _now(app, now_text))
    if report.ingested:
        click.echo(f"ingest: {report.ingested}")
    click.echo(report.line())
    for address, outcome in report.reviews:
        click.echo(
            f"  {address}: {outcome.status}" + (f" ({outcome.error})" if outcome.error else "")
        )


@cli.command()
@click.option(
    "--week", "label", metavar="LABEL", help="The draft to approve (default: the latest)."
)
@click.pass_obj
def approve(app: App, label: str | None) -> None:
    """Approve the latest draft: the clock sends it at the next send time.

    Example: digest approve
    """
    from digest.review import approve as approve_draft

    click.echo(approve_draft(app.store, app.settings, label).line())


def main() -> None:
    """Console entry point."""
    try:
        cli.main(prog_name="digest")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
