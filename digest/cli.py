"""The `digest` command line: parse, call one library function, print."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from digest import pipeline
from digest.errors import DigestError
from digest.models import Window
from digest.selection import lineup_json, parse_window
from digest.settings import Settings, read_settings
from digest.store import Store
from digest.subscribers import import_csv, unsubscribe

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """What every command shares: settings and store, loaded on first use."""

    def __init__(self, config: str | None, db: str | None, debug: bool) -> None:
        self.config = config
        self.debug = debug
        self.overrides: dict[str, Any] = {"database_url": db}
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        """The layered settings (flags given so far win)."""
        if self._settings is None:
            self._settings = read_settings(self.config, overrides=self.overrides)
        return self._settings

    @property
    def store(self) -> Store:
        """The open store."""
        if self._store is None:
            self._store = Store.open(self.settings.database_url)
        return self._store

    def close(self) -> None:
        """Release the store."""
        if self._store is not None:
            self._store.close()

    def window(self, week: str | None, since: str | None, until: str | None) -> Window:
        """The window the window options name."""
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
        except sa.exc.SQLAlchemyError as e:
            if _debug(ctx):
                raise
            raise UserError(
                f"database error: {getattr(e, 'orig', None) or e}".splitlines()[0],
                "check the database URL (--db / DIGEST_DATABASE_URL) and that it is reachable",
            ) from e


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


def window_options(func: F) -> F:
    """--week / --since / --until."""
    func = click.option(
        "--until",
        metavar="DATE",
        help="End of the window (exclusive time, or the whole day for a date).",
    )(func)
    func = click.option("--since", metavar="DATE", help="Start of the window (YYYY-MM-DD).")(func)
    return click.option("--week", metavar="YYYY-Www", help="An ISO week, e.g. 2025-W14.")(func)


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
@click.version_option(package_name="digest")
@click.pass_context
def cli(ctx: click.Context, config: str | None, db: str | None, debug: bool) -> None:
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
    report = pipeline.init_folder(folder, force=force, database_url=app.overrides["database_url"])
    for path in report.written:
        click.echo(f"wrote {path}")
    if report.subscribers is not None:
        click.echo(f"subscribers: {report.subscribers.line()}")
    click.echo(f"\nNext: cd {folder} && digest ingest && digest send")


@cli.command()
@click.argument("sources", nargs=-1)
@click.pass_obj
def ingest(app: App, sources: tuple[str, ...]) -> None:
    """Read articles from files, folders, feeds or URLs into the store.

    Without SOURCES, reads the [sources] paths of digest.toml.

    Example: digest ingest articles/ https://example.com/feed.xml
    """
    report = pipeline.ingest_sources(app.store, app.settings, sources)
    click.echo(report.line())
    for failure in report.failures:
        click.echo(f"{failure.source}: {failure.reason}")
    if report.failures:
        sys.exit(1)


@cli.command()
@window_options
@json_option
@click.pass_obj
def articles(
    app: App, week: str | None, since: str | None, until: str | None, as_json: bool
) -> None:
    """List stored articles (all, or those of a window).

    Example: digest articles --week 2025-W14 --json
    """
    window = app.window(week, since, until) if (week or since or until) else None
    records = pipeline.article_records(app.store, app.settings, window)
    if as_json:
        echo_json(records)
        return
    for r in records:
        click.echo(f"{r['id']:>5}  {(r['published'] or '')[:10]}  {r['title']}")
        click.echo(f"       {r['source'] or '-'}  {r['url'] or r['origin']}")
    click.echo(f"{len(records)} articles")


@cli.command()
@window_options
@click.option("--top", type=click.IntRange(min=1), help="How many stories (default 10).")
@json_option
@click.pass_obj
def select(
    app: App, week: str | None, since: str | None, until: str | None, top: int | None, as_json: bool
) -> None:
    """Show the lineup: the window's top stories, ranked and summarized.

    Example: digest select --week 2025-W14 --top 5
    """
    window = app.window(week, since, until)
    stories = lineup_json(pipeline.build_lineup(app.store, app.settings, window, top))
    if as_json:
        echo_json(stories)
        return
    click.echo(f"Lineup for {window.label} ({len(stories)} stories)")
    for s in stories:
        click.echo(
            f"{s['rank']:>3}. {s['title']}  [{s['source'] or '-'}, "
            f"{(s['published'] or '')[:10]}, score {s['score']}]"
        )
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
) -> None:
    """Write the HTML (or text part) a sample subscriber would get.

    Example: digest preview --out issue.html
    """
    result = pipeline.preview(
        app.store, app.settings, app.window(week, since, until), top, list_name
    )
    body = result.text if text else result.html
    if out is None:
        click.echo(body, nl=False)
        return
    out.write_text(body, encoding="utf-8")
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
@click.pass_obj
def subscribers_import(app: App, csv_file: Path, list_name: str | None) -> None:
    """Import subscribers from a CSV file (columns: email, name, lists, status, …).

    Bad rows are reported with their line number; the good rows are imported.

    Example: digest subscribers import people.csv --list main
    """
    report = import_csv(app.store, csv_file, app.settings.list, list_name)
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
                }
                for p in people
            ]
        )
        return
    for p in people:
        click.echo(f"{p.email:<40} {p.status:<13} {','.join(p.lists):<20} {p.name}")
    click.echo(f"{len(people)} subscribers")


@subscribers.command("unsubscribe")
@click.argument("email")
@click.pass_obj
def subscribers_unsubscribe(app: App, email: str) -> None:
    """Unsubscribe one address from everything.

    Example: digest subscribers unsubscribe ada@example.com
    """
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
@click.option("--yes", "-y", is_flag=True, help="Do not ask before sending.")
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
    yes: bool,
) -> None:
    """Send the window's issue to a list, exactly once per subscriber.

    First reads the sources of digest.toml (unless --no-ingest or the issue was already
    sent). Running it again sends only to those who have not had the issue yet.

    Example: digest send --backend outbox --outbox out --yes
    """
    app.overrides.update(backend=backend, outbox=outbox)
    plan = pipeline.plan_send(
        app.store,
        app.settings,
        app.window(week, since, until),
        top,
        list_name,
        gather=not no_ingest,
    )
    if plan.ingested is not None:
        click.echo(f"ingest: {plan.ingested.line()}")
        for failure in plan.ingested.failures:
            click.echo(f"{failure.source}: {failure.reason}")
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
    if not (yes or dry_run):
        click.confirm("Send now?", abort=True)
    # A bar only where someone watches; scripts and logs get the summary line alone.
    if sys.stderr.isatty():
        with click.progressbar(
            length=plan.recipients, label="sending", file=sys.stderr, show_pos=True
        ) as bar:
            report = pipeline.send(
                app.store, app.settings, plan, dry_run=dry_run, force=force, progress=bar.update
            )
    else:
        report = pipeline.send(app.store, app.settings, plan, dry_run=dry_run, force=force)
    click.echo(report.line())
    if report.interrupted:
        click.echo(
            f"{report.interrupted} deliveries were interrupted by an earlier run and are "
            "now 'unknown' (see 'digest status')"
        )
    for email, reason in report.failures:
        click.echo(f"{email}: {reason}")
    if report.failed or report.unknown:
        sys.exit(1)


@cli.command()
@json_option
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Delivery counts per issue and list.

    Example: digest status --json
    """
    rows = app.store.status()
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
                }
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
        )


def main() -> None:
    """Console entry point."""
    try:
        cli.main(prog_name="digest")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
