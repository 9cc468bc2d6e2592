"""The public side of sent issues: web views without personal tokens, the archive, the feed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from digest.errors import DigestError
from digest.models import Issue
from digest.personalize import fill
from digest.render import ASM_PREFERENCES, ASM_UNSUBSCRIBE, template_environment
from digest.settings import Settings
from digest.store import Store
from digest.urls import is_url


def sent_issues(store: Store) -> list[Issue]:
    """Every issue that went out to anyone, newest first."""
    return store.public_issues()


def sent_issue(store: Store, issue_id: int) -> Issue | None:
    """One issue that went out to anyone, or None (drafts and unknown ids are not public)."""
    return store.public_issue(issue_id)


def sent_variant(store: Store, issue_id: int, number: int) -> Issue | None:
    """Variant `number` of a sent issue ([selection] personalize), or None."""
    found = store.public_issue(issue_id, with_variants=True)
    if found is None:
        return None
    try:
        return found.variant(number)
    except KeyError:
        return None


@dataclass(frozen=True)
class Links:
    """Where the public pages live: `root` is the base URL, or a relative path for static files."""

    root: str
    trailing: str = ""  # "/" for static folders (issues/3/ → issues/3/index.html)

    def issue(self, issue_id: int) -> str:
        """The web view of one issue."""
        return f"{self.root}/issues/{issue_id}{self.trailing}"

    @property
    def archive(self) -> str:
        """The list of past issues."""
        return f"{self.root}/archive{self.trailing}"

    @property
    def feed(self) -> str:
        """The Atom feed."""
        return f"{self.root}/feed.xml"

    @property
    def unsubscribe(self) -> str:
        """The page that explains how to unsubscribe (the personal link is in the email)."""
        return f"{self.root}/unsubscribe{self.trailing}"


def public_values(issue: Issue, settings: Settings, links: Links) -> dict[str, str]:
    """Marker values for a shareable copy: nobody's address, name or token."""
    return {
        "email": "a reader",
        "name": "",
        "list": settings.list,
        "unsubscribe_url": links.unsubscribe,
        "preferences_url": links.unsubscribe,
        "web_url": links.issue(issue.id),
    }


def issue_page(issue: Issue, settings: Settings, links: Links) -> str:
    """The issue's HTML exactly as sent, filled with neutral values.

    SendGrid's unsubscribe-group links, which only SendGrid can fill, lead to the page that
    explains how to unsubscribe, as our own links do.
    """
    html = fill(issue.rendered.html, public_values(issue, settings, links))
    return html.replace(ASM_UNSUBSCRIBE, links.unsubscribe).replace(
        ASM_PREFERENCES, links.unsubscribe
    )


class Pages:
    """Renders the web side's pages from templates/web (user templates first)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = template_environment(settings)
        self.env.auto_reload = False  # no stat() of every template on every request

    def render(self, name: str, **context: Any) -> str:
        """One page; every value is HTML-escaped by the template."""
        base = {"newsletter": self.settings.name, "language": self.settings.language}
        try:
            return self.env.get_template(f"web/{name}").render(**base, **context)
        except jinja2.TemplateError as e:
            raise DigestError(
                f"template web/{name}: {e}", "fix or remove your copy of that template"
            ) from e

    def archive(self, found: list[Issue], links: Links) -> str:
        """The list of past issues."""
        return self.render(
            "archive.html.j2",
            issues=[_item(i, links) for i in found],
            feed=links.feed,
            robots="index",
        )

    def feed(self, found: list[Issue], links: Links, site: str) -> str:
        """An Atom feed of past issues; `site` is the absolute base for ids, if there is one."""
        site = site or self.settings.name
        updated = max((i.sent_at for i in found if i.sent_at), default=None)
        return self.render(
            "feed.xml.j2",
            issues=[_item(i, links, site) for i in found],
            feed=links.feed,
            archive=links.archive,
            feed_id=_atom_id(site, "/feed.xml"),
            author=self.settings.sender_name,
            updated=_atom_time(updated or datetime.now(UTC)),
        )

    def unsubscribe_help(self, links: Links) -> str:
        """The generic unsubscribe page shared copies link to."""
        return self.render("unsubscribe.html.j2", state="help", archive=links.archive)


def _item(issue: Issue, links: Links, site: str = "") -> dict[str, Any]:
    when = issue.sent_at or issue.created_at
    return {
        "number": issue.number,
        "subject": issue.rendered.subject,
        "href": links.issue(issue.id),
        "id": _atom_id(site, f"/issues/{issue.id}"),
        "date": when.date().isoformat(),
        "updated": _atom_time(when),
        "titles": [str(s.get("title", "")) for s in issue.lineup][:10],
    }


def _atom_id(site: str, path: str) -> str:
    """A permanent id: the absolute URL, or a name-based UUID when there is no base URL."""
    if is_url(site):
        return f"{site}{path}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'digest:{site}{path}')}"


def _atom_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ArchiveReport:
    """What `digest archive build` wrote."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    issues: int = 0

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return f"wrote {len(self.written)} files for {self.issues} issues to {self.folder}"


def build_archive(store: Store, settings: Settings, folder: Path) -> ArchiveReport:
    """Write the archive, every sent issue's web view and the feed as static files."""
    found = sent_issues(store)
    pages = Pages(settings)
    site = settings.base_url.rstrip("/")
    report = ArchiveReport(folder=folder.resolve(), issues=len(found))

    def write(relative: str, text: str) -> None:
        path = report.folder / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise DigestError(
                f"cannot write {path}: {e.strerror}", "pass a folder you can write to"
            ) from e
        report.written.append(path)

    # Relative links, so the folder works wherever it is hosted; ids and the feed use base_url.
    top, nested = Links(".", "/"), Links("..", "/")
    write("index.html", pages.archive(found, top))
    write("archive/index.html", pages.archive(found, nested))
    write("unsubscribe/index.html", pages.unsubscribe_help(nested))
    for issue in found:
        write(f"issues/{issue.id}/index.html", issue_page(issue, settings, Links("../..", "/")))
    write("feed.xml", pages.feed(found, Links(site, "/") if site else top, site))
    return report
