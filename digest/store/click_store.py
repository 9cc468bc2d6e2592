"""Clicks on story links, and their counts per story."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from digest.store.base import StoreBase
from digest.store.rows import to_db
from digest.store.schema import clicks, deliveries, issues


@dataclass(frozen=True)
class Click:
    """One click on a story link."""

    issue_label: str
    position: int
    url: str
    visitor: str
    source: str  # "link" or "sendgrid"
    happened_at: datetime


@dataclass(frozen=True)
class StoryClicks:
    """One story of an issue and how it was clicked, beside its position's average."""

    position: int
    title: str
    url: str
    clicks: int
    unique_clicks: int
    recipients: int  # copies sent of the issue
    position_average: float | None  # the mean click-through at this position over issues

    @property
    def click_through(self) -> float | None:
        """Unique clicks per copy sent."""
        return self.unique_clicks / self.recipients if self.recipients else None

    def as_json(self) -> dict[str, Any]:
        """As `digest status --issue ID --json` gives it."""
        rate = self.click_through
        average = self.position_average
        return {
            "position": self.position,
            "title": self.title,
            "url": self.url,
            "clicks": self.clicks,
            "unique_clicks": self.unique_clicks,
            "click_through": None if rate is None else round(rate, 4),
            "position_average": None if average is None else round(average, 4),
        }


@dataclass(frozen=True)
class Shown:
    """One story of a past issue, where it was shown and how many readers clicked it."""

    issue: str  # the issue's label
    position: int  # its number as shown
    source: str  # the lineup's source name (or its URL's host)
    section: str  # "" when it named none
    unique_clicks: int
    recipients: int  # copies sent of the issue


class ClickStore(StoreBase):
    """Clicks on story links."""

    def record_clicks(self, found: list[Click]) -> None:
        """Store clicks, in one transaction."""
        if not found:
            return
        with self.begin() as conn:
            conn.execute(
                clicks.insert(),
                [
                    {
                        "issue_label": c.issue_label,
                        "position": c.position,
                        "url": c.url,
                        "visitor": c.visitor,
                        "source": c.source,
                        "happened_at": to_db(c.happened_at),
                    }
                    for c in found
                ],
            )

    def story_clicks(self, issue_id: int) -> list[StoryClicks] | None:
        """Each story of a sent issue with its clicks (on its own link and its "also covered
        by" links), by position; None if no such issue."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(issues.c.label, issues.c.lineup).where(issues.c.id == issue_id)
            ).first()
            if row is None:
                return None
            sent = _sent_by_label(conn)
            counts = conn.execute(
                sa.select(
                    clicks.c.issue_label,
                    clicks.c.position,
                    sa.func.count(sa.distinct(clicks.c.visitor)),
                ).group_by(clicks.c.issue_label, clicks.c.position)
            ).all()
            mine = conn.execute(
                sa.select(clicks.c.url, clicks.c.position, clicks.c.visitor, sa.func.count())
                .where(clicks.c.issue_label == row.label)
                .group_by(clicks.c.url, clicks.c.position, clicks.c.visitor)
            ).all()
        lineup = json.loads(row.lineup)
        story_of = _stories_by_url(lineup)
        # Per story: the position it was clicked at, clicks, and who (both paths, all links).
        found: dict[int, tuple[int, int, set[str]]] = {}
        for url, position, who, count in mine:
            index = story_of.get(str(url))
            if index is not None:
                was = found.get(index, (int(position), 0, set()))
                found[index] = (min(was[0], int(position)), was[1] + int(count), was[2] | {who})
        rates: dict[int, list[float]] = {}  # position → unique click-through of each issue
        for label, position, unique in counts:
            if sent.get(str(label)):
                rates.setdefault(int(position), []).append(int(unique) / sent[str(label)])
        out = []
        for index, entry in enumerate(lineup):
            shown = int(entry.get("position") or index + 1)
            position, count, visitors = found.get(index, (shown, 0, set()))
            average = rates.get(position)
            out.append(
                StoryClicks(
                    position=position,
                    title=str(entry.get("title") or ""),
                    url=str(entry.get("url") or ""),
                    clicks=count,
                    unique_clicks=len(visitors),
                    recipients=sent.get(row.label, 0),
                    position_average=sum(average) / len(average) if average else None,
                )
            )
        return sorted(out, key=lambda s: s.position)

    def shown_stories(self, before: str | None = None) -> list[Shown]:
        """Every story of each sent issue that has clicks recorded (a sign clicks were
        counted then), other than the issue `before`; oldest issue first. A story's unique
        clicks are summed over its links (its own and its "also covered by" ones)."""
        with self.engine.connect() as conn:
            sent = _sent_by_label(conn)
            unique = conn.execute(
                sa.select(
                    clicks.c.issue_label,
                    clicks.c.url,
                    sa.func.min(clicks.c.position),
                    sa.func.count(sa.distinct(clicks.c.visitor)),
                ).group_by(clicks.c.issue_label, clicks.c.url)
            ).all()
            clicked: dict[str, dict[str, tuple[int, int]]] = {}
            for label, url, position, count in unique:
                clicked.setdefault(str(label), {})[str(url)] = (int(position), int(count))
            wanted = [label for label in clicked if sent.get(label) and label != before]
            rows = conn.execute(
                sa.select(issues.c.label, issues.c.lineup)
                .where(issues.c.label.in_(wanted))
                .order_by(issues.c.since, issues.c.id)
            ).all()
        out = []
        for label, text in rows:
            lineup = json.loads(text)
            story_of = _stories_by_url(lineup)
            per_story: dict[int, tuple[int, int]] = {}
            for url, (position, count) in clicked[str(label)].items():
                index = story_of.get(url)
                if index is not None:
                    was = per_story.get(index, (position, 0))
                    per_story[index] = (min(was[0], position), was[1] + count)
            for index, entry in enumerate(lineup):
                url = str(entry.get("url") or "")
                position, count = per_story.get(index, (index + 1, 0))
                out.append(
                    Shown(
                        issue=str(label),
                        position=int(entry.get("position") or position),
                        source=str(entry.get("source") or urlsplit(url).hostname or ""),
                        section=str(entry.get("section") or ""),
                        unique_clicks=count,
                        recipients=sent[str(label)],
                    )
                )
        return out

    def issue_label_by_id(self, issue_id: int) -> str | None:
        """The label of an issue, or None."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(issues.c.label).where(issues.c.id == issue_id)
            ).scalar_one_or_none()
        return None if found is None else str(found)


def _stories_by_url(lineup: list[Any]) -> dict[str, int]:
    """Which story of a frozen lineup (its index) each link leads to: its own URL, and the
    URLs of its "also covered by" links (the first story naming a URL keeps it)."""
    found: dict[str, int] = {}
    for index, entry in enumerate(lineup):
        if not isinstance(entry, dict):
            continue
        links = [entry.get("url"), *(a.get("url") for a in entry.get("also") or [])]
        for url in links:
            if url:
                found.setdefault(str(url), index)
    return found


def story_positions(lineup: list[Any]) -> dict[str, int]:
    """Each link of a frozen lineup → the position its story is shown at (SendGrid's click
    events name only the link)."""
    return {
        url: int(lineup[index].get("position") or index + 1)
        for url, index in _stories_by_url(lineup).items()
    }


def _sent_by_label(conn: sa.Connection) -> dict[str, int]:
    """Copies sent of each issue, by label."""
    query = (
        sa.select(issues.c.label, sa.func.count())
        .select_from(issues.join(deliveries, deliveries.c.issue_id == issues.c.id))
        .where(deliveries.c.status == "sent")
        .group_by(issues.c.label)
    )
    return {str(label): int(n) for label, n in conn.execute(query)}
