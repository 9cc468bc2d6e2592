"""Issues: frozen lineups and content, numbers, when they were sent, and the editor's picks."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryStatus, Issue, RenderedIssue, Variant
from digest.store.base import StoreBase
from digest.store.rows import _issue, to_db, utcnow
from digest.store.schema import (
    articles,
    deliveries,
    issue_topic_sets,
    issue_variants,
    issues,
    meta,
    picks,
)

# Where the note waiting for the next issue (`digest note FILE.md`) is kept until it freezes.
NEXT_NOTE = "next_note"


class IssueStore(StoreBase):
    """Issues and the picks that go to them."""

    def issue_by_label(self, label: str) -> Issue | None:
        """The issue for a window label, if one was frozen."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues).where(issues.c.label == label)).first()
            return None if row is None else with_variants_of(conn, _issue(row))

    def create_issue(
        self,
        label: str,
        since: datetime,
        until: datetime,
        lineup: list[dict[str, Any]],
        rendered: RenderedIssue,
        number: int,
        *,
        with_picks: bool = False,
        note: str = "",
        variants: list[Variant] | None = None,
        general_sets: list[str] | None = None,
    ) -> Issue:
        """Freeze an issue: its lineup and rendered content never change after this.

        `with_picks`: the pending picks (the editor's pins and drops) and the note waiting
        for the next issue go to it in the same transaction, so a failure leaves neither the
        issue nor them half-moved. `note`: the note's Markdown it was rendered with.
        `variants`, `general_sets`: a personalized issue's other lineups and which topic sets
        get which, frozen with it.
        """
        with self.begin() as conn:
            issue_id = conn.execute(
                issues.insert().values(
                    number=number,
                    label=label,
                    since=to_db(since),
                    until=to_db(until),
                    lineup=json.dumps(lineup),
                    subject=rendered.subject,
                    preheader=rendered.preheader,
                    html=rendered.html,
                    text=rendered.text,
                    created_at=utcnow(),
                    note=note or None,
                )
            ).inserted_primary_key[0]
            if with_picks:
                self.attach_picks(label, conn)
                conn.execute(meta.delete().where(meta.c.key == NEXT_NOTE))
            _store_variants(conn, issue_id, variants or [], general_sets or [])
            row = conn.execute(sa.select(issues).where(issues.c.id == issue_id)).one()
            return with_variants_of(conn, _issue(row))

    def freeze_issue(
        self,
        label: str,
        since: datetime,
        until: datetime,
        lineup: list[dict[str, Any]],
        rendered: RenderedIssue,
        number: int,
        *,
        note: str = "",
        variants: list[Variant] | None = None,
        general_sets: list[str] | None = None,
    ) -> Issue:
        """`create_issue` with the pending picks; if another run froze `label` first, theirs,
        so that both send the same thing (variants included)."""
        try:
            return self.create_issue(
                label,
                since,
                until,
                lineup,
                rendered,
                number,
                with_picks=True,
                note=note,
                variants=variants,
                general_sets=general_sets,
            )
        except sa.exc.IntegrityError:
            frozen = self.issue_by_label(label)
            if frozen is None:
                raise
            return frozen

    def set_next_note(self, markdown: str | None) -> str | None:
        """Keep `markdown` as the next issue's note (None forgets it); returns the one before."""
        with self.begin() as conn:
            before = conn.execute(sa.select(meta.c.value).where(meta.c.key == NEXT_NOTE)).scalar()
            conn.execute(meta.delete().where(meta.c.key == NEXT_NOTE))
            if markdown is not None:
                conn.execute(meta.insert().values(key=NEXT_NOTE, value=markdown))
        return None if before is None else str(before)

    def next_note(self) -> str | None:
        """The note waiting for the next issue, if the editor wrote one."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.key == NEXT_NOTE)).scalar()
        return None if value is None else str(value)

    def next_issue_number(self) -> int:
        """The number the next frozen issue gets."""
        with self.engine.connect() as conn:
            return (
                int(conn.execute(sa.select(sa.func.count()).select_from(issues)).scalar_one()) + 1
            )

    def mark_issue_sent(self, issue_id: int) -> None:
        """Record when an issue first finished sending."""
        with self.begin() as conn:
            conn.execute(
                issues.update()
                .where(issues.c.id == issue_id, issues.c.sent_at.is_(None))
                .values(sent_at=utcnow())
            )

    def withdraw_unsent_issue(self, issue_id: int) -> bool:
        """Unfreeze an issue nothing of which went out: its deliveries and itself go, its
        picks wait again, and its number is the next issue's. False (and nothing changes)
        once any delivery was sent, may have been, or is being sent, or it is scheduled."""
        went_out = sa.select(1).where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.status.notin_([str(DeliveryStatus.PENDING), str(DeliveryStatus.FAILED)]),
        )
        with self.begin() as conn:
            row = conn.execute(sa.select(issues.c.label).where(issues.c.id == issue_id)).first()
            if row is None or conn.execute(went_out.limit(1)).first() is not None:
                return False
            if conn.execute(
                sa.select(meta.c.key).where(meta.c.key == f"schedule:{issue_id}")
            ).first():
                return False
            conn.execute(deliveries.delete().where(deliveries.c.issue_id == issue_id))
            conn.execute(issue_topic_sets.delete().where(issue_topic_sets.c.issue_id == issue_id))
            conn.execute(issue_variants.delete().where(issue_variants.c.issue_id == issue_id))
            conn.execute(
                picks.update().where(picks.c.issue_label == row.label).values(issue_label=None)
            )
            conn.execute(issues.delete().where(issues.c.id == issue_id))
        return True

    def schedule_of(self, issue_id: int) -> str | None:
        """The stored schedule (JSON text) of an issue sent with --send-at, if any."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(meta.c.value).where(meta.c.key == f"schedule:{issue_id}")
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def save_schedule(self, issue_id: int, value: str) -> None:
        """Keep an issue's schedule (JSON text), replacing what was kept."""
        key = f"schedule:{issue_id}"
        with self.begin() as conn:
            conn.execute(meta.delete().where(meta.c.key == key))
            conn.execute(meta.insert().values(key=key, value=value))

    def deliveries_started(self, issue_id: int) -> int:
        """How many deliveries of an issue ever left `pending`."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.issue_id == issue_id,
                        deliveries.c.status != str(DeliveryStatus.PENDING),
                    )
                ).scalar_one()
            )

    def issue_named(self, name: str) -> tuple[int, str] | None:
        """(id, label) of the issue labelled `name`, or numbered `name` when it is digits."""
        where = issues.c.label == name if not name.isdigit() else issues.c.number == int(name)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(issues.c.id, issues.c.label).where(where)).first()
        return None if row is None else (int(row.id), str(row.label))

    def cancel_deliveries(self, issue_id: int, error: str) -> int:
        """A cancelled schedule: every sent, unknown or pending delivery of it is `failed`."""
        cancelled = [DeliveryStatus.SENT, DeliveryStatus.UNKNOWN, DeliveryStatus.PENDING]
        with self.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.status.in_([str(s) for s in cancelled]),
                )
                .values(status=str(DeliveryStatus.FAILED), updated_at=utcnow(), error=error)
            )
        return int(result.rowcount or 0)

    def set_pick(self, key: str, action: str) -> str | None:
        """Pin or drop `key` for the coming issue; returns what was pending for it before."""
        pending = sa.and_(picks.c.key == key, picks.c.issue_label.is_(None))
        with self.begin() as conn:
            before = conn.execute(sa.select(picks.c.action).where(pending)).scalar()
            conn.execute(picks.delete().where(pending))
            conn.execute(picks.insert().values(key=key, action=action, created_at=utcnow()))
        return None if before is None else str(before)

    def remove_pick(self, key: str) -> str | None:
        """Forget the pending pin or drop of `key`; returns what it was, or None."""
        pending = sa.and_(picks.c.key == key, picks.c.issue_label.is_(None))
        with self.begin() as conn:
            before = conn.execute(sa.select(picks.c.action).where(pending)).scalar()
            conn.execute(picks.delete().where(pending))
        return None if before is None else str(before)

    def picks(self, label: str | None = None) -> list[tuple[str, str]]:
        """(key, action) pairs, oldest first: pending ones, or those frozen with issue `label`."""
        where = picks.c.issue_label.is_(None) if label is None else picks.c.issue_label == label
        query = sa.select(picks.c.key, picks.c.action).where(where).order_by(picks.c.id)
        with self.engine.connect() as conn:
            return [(str(key), str(action)) for key, action in conn.execute(query)]

    def source_and_section_names(self) -> set[str]:
        """Every stored article's source name and section: what a [topics] choice can name."""
        names: set[str] = set()
        with self.engine.connect() as conn:
            for column in (articles.c.source, articles.c.section):
                query = sa.select(column).where(column.is_not(None)).distinct()
                names.update(str(v).strip() for (v,) in conn.execute(query) if str(v).strip())
        return names

    def article_known(self, key: str) -> bool:
        """Whether a stored article has this key (canonical URL), URL or origin."""
        query = (
            sa.select(articles.c.id)
            .where(sa.or_(articles.c.key == key, articles.c.url == key, articles.c.origin == key))
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def attach_picks(self, label: str, conn: sa.Connection | None = None) -> int:
        """Give the pending picks to the issue `label` as it freezes; returns how many.

        `conn`: the transaction to do it in (create_issue's), else one of its own.
        """
        if conn is None:
            with self.begin() as own:
                return self.attach_picks(label, own)
        result = conn.execute(
            picks.update().where(picks.c.issue_label.is_(None)).values(issue_label=label)
        )
        return int(result.rowcount or 0)


def _store_variants(
    conn: sa.Connection, issue_id: int, variants: list[Variant], general_sets: list[str]
) -> None:
    """A personalized issue's variants and the topic sets each serves (general: 0)."""
    if variants:
        conn.execute(
            issue_variants.insert(),
            [
                {
                    "issue_id": issue_id,
                    "variant": v.number,
                    "topics": json.dumps(v.topics),
                    "lineup": json.dumps(v.lineup),
                    "subject": v.rendered.subject,
                    "preheader": v.rendered.preheader,
                    "html": v.rendered.html,
                    "text": v.rendered.text,
                }
                for v in variants
            ],
        )
    sets = [(key, v.number) for v in variants for key in v.topic_sets]
    sets += [(key, 0) for key in general_sets]
    if sets:
        conn.execute(
            issue_topic_sets.insert(),
            [{"issue_id": issue_id, "topics": key, "variant": n} for key, n in sets],
        )


def with_variants_of(conn: sa.Connection, issue: Issue) -> Issue:
    """`issue` with its frozen variants (none unless it was personalized)."""
    sets: dict[int, list[str]] = {}
    for key, number in conn.execute(
        sa.select(issue_topic_sets.c.topics, issue_topic_sets.c.variant).where(
            issue_topic_sets.c.issue_id == issue.id
        )
    ):
        sets.setdefault(int(number), []).append(str(key))
    rows = conn.execute(
        sa.select(issue_variants)
        .where(issue_variants.c.issue_id == issue.id)
        .order_by(issue_variants.c.variant)
    )
    issue.variants = [
        Variant(
            number=int(r.variant),
            topics=json.loads(r.topics),
            lineup=json.loads(r.lineup),
            rendered=RenderedIssue(
                subject=r.subject, preheader=r.preheader, html=r.html, text=r.text
            ),
            topic_sets=sorted(sets.get(int(r.variant), [])),
        )
        for r in rows
    ]
    issue.general_sets = sorted(sets.get(0, []))
    return issue
