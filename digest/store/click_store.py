"""Clicks on story links, and their counts per story."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
        """Each story of a sent issue with its clicks, by position; None if no such issue."""
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
                    clicks.c.url,
                    sa.func.count(),
                    sa.func.count(sa.distinct(clicks.c.visitor)),
                ).group_by(clicks.c.issue_label, clicks.c.position, clicks.c.url)
            ).all()
        lineup = json.loads(row.lineup)
        mine: dict[str, tuple[int, int, int]] = {}  # url → position, clicks, unique
        rates: dict[int, list[float]] = {}  # position → unique click-through of each issue
        per_issue: dict[tuple[str, int], int] = {}
        for label, position, url, count, unique in counts:
            if label == row.label:  # one story's clicks from both paths: the shown position
                was = mine.get(str(url), (int(position), 0, 0))
                mine[str(url)] = (min(was[0], int(position)), was[1] + count, was[2] + unique)
            key = (str(label), int(position))
            per_issue[key] = per_issue.get(key, 0) + int(unique)
        for (label, position), unique in per_issue.items():
            if sent.get(label):
                rates.setdefault(position, []).append(unique / sent[label])
        out = []
        for rank, entry in enumerate(lineup, 1):
            url = str(entry.get("url") or "")
            position, count, unique = mine.get(url, (rank, 0, 0))
            average = rates.get(position)
            out.append(
                StoryClicks(
                    position=position,
                    title=str(entry.get("title") or ""),
                    url=url,
                    clicks=count,
                    unique_clicks=unique,
                    recipients=sent.get(row.label, 0),
                    position_average=sum(average) / len(average) if average else None,
                )
            )
        return sorted(out, key=lambda s: s.position)

    def issue_label_by_id(self, issue_id: int) -> str | None:
        """The label of an issue, or None."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(issues.c.label).where(issues.c.id == issue_id)
            ).scalar_one_or_none()
        return None if found is None else str(found)


def _sent_by_label(conn: sa.Connection) -> dict[str, int]:
    """Copies sent of each issue, by label."""
    query = (
        sa.select(issues.c.label, sa.func.count())
        .select_from(issues.join(deliveries, deliveries.c.issue_id == issues.c.id))
        .where(deliveries.c.status == "sent")
        .group_by(issues.c.label)
    )
    return {str(label): int(n) for label, n in conn.execute(query)}
