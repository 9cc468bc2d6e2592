"""The ledger's rows: one delivery per issue and subscriber, and counts of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from digest.models import DeliveryStatus
from digest.store.base import StoreBase, dialect_insert
from digest.store.rows import utcnow
from digest.store.schema import (
    deliveries,
    events,
    issue_topic_sets,
    issues,
    memberships,
    optouts,
    send_leases,
    send_workers,
    subscribers,
)

# What `deliveries.fault` says of a failure: the address was refused, or the send was (a
# request refused whole, a configuration fault) and a retry after the fix may go through.
FAULT_RECIPIENT = "recipient"
FAULT_SENDER = "sender"


@dataclass
class StatusRow:
    """Delivery counts for one issue and list."""

    issue: str
    number: int
    list: str
    sent: int
    failed: int
    pending: int
    sending: int
    unknown: int
    # From provider events and unsubscribe links (0 until any arrive).
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0


# SQLite's page cache for an enqueue, in PRAGMA cache_size's units (negative: KiB).
ENQUEUE_CACHE_KIB = -16_384


class LedgerStore(StoreBase):
    """Deliveries and what became of them."""

    def enqueue(
        self,
        issue_id: int,
        list_name: str,
        *,
        after: int = 0,
        until: int | None = None,
        analyze: bool = True,
    ) -> int:
        """Add a pending delivery for every active list member who has none for this issue
        (those with a subscriber id past `after`, up to `until` when given: a step of an
        enqueue the send goes on beside; `analyze`: refresh PostgreSQL's statistics after).

        Costs in proportion to the list, however much of it was sent: `NOT EXISTS` is an
        anti-join on the primary key (a `NOT IN (subquery)` outgrew PostgreSQL's work_mem at
        100,000 deliveries and ran as a per-row subplan, minutes for a finished send). Rows go
        in by subscriber id, so the primary key grows at its end. Only when another run
        enqueued some of the same rows at the same moment (the same issue to another list
        with members in common) does it insert again with `ON CONFLICT DO NOTHING`, whose
        per-row check nearly doubled the time of a million-row enqueue on PostgreSQL.
        """
        with self.engine.connect() as conn:
            personalized = conn.execute(
                sa.select(issue_topic_sets.c.variant)
                .where(issue_topic_sets.c.issue_id == issue_id)
                .limit(1)
            ).first()
        have = sa.select(1).where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscribers.c.id
        )
        # PostgreSQL, a personalized issue: each reader copied into their row, for the claims
        # of runs of one variant to read there, numbered as `recipient_changes` stands
        # (schema: deliveries.copied).
        copied = personalized is not None and self.engine.dialect.name == "postgresql"
        copy = (
            [
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.fields,
                sa.bindparam("copied", type_=sa.BigInteger),
            ]
            if copied
            else []
        )
        # Each row's variant, decided as the issue froze for the reader's topic set (a set
        # chosen since gets the general lineup, 0): an outer join on the primary key of the
        # issue's few hundred sets. Not a scalar subquery: PostgreSQL ran that once per row
        # (a million index probes: 20 of a million-row enqueue's 25 s), a join it hashes.
        sets = issue_topic_sets.alias("sets")
        chosen = sa.and_(sets.c.issue_id == issue_id, sets.c.topics == subscribers.c.topics)
        members = (
            sa.select(
                sa.literal(issue_id).label("issue_id"),
                subscribers.c.id,
                sa.literal(list_name).label("list_name"),
                sa.literal(str(DeliveryStatus.PENDING)).label("status"),
                sa.literal(0).label("attempts"),
                sa.literal(utcnow()).label("updated_at"),
                sa.func.coalesce(sets.c.variant, 0).label("variant"),
                *copy,
            )
            .select_from(subscribers.join(memberships).outerjoin(sets, chosen))
            .where(
                memberships.c.list_name == list_name,
                subscribers.c.status == "active",
                subscribers.c.id > after,
            )
        )
        queued = [deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id > after]
        if until is not None:
            members = members.where(subscribers.c.id <= until)
            queued.append(deliveries.c.subscriber_id <= until)
        with self.engine.connect() as conn:
            some = conn.execute(sa.select(1).where(*queued).limit(1)).first()
        if some is not None:  # a resumed send: only those not queued yet (a first has none)
            members = members.where(~have.exists())
        if personalized is not None:
            # Stored a variant after another: a batch is one variant's, so its claim and
            # outcome then write rows that sit together, not a page for each of them (on
            # SQLite 0.16 s against 0.015 s a batch of 1,000; the heap alike on PostgreSQL).
            # One ORDER BY, said once: a second order_by() call appends to the first, and
            # "by id, then variant" is by id (so it was, unnoticed, after a merge).
            members = members.order_by("variant", subscribers.c.id)
        else:
            members = members.order_by(subscribers.c.id)
        columns = [
            "issue_id",
            "subscriber_id",
            "list_name",
            "status",
            "attempts",
            "updated_at",
            "variant",
        ] + (["email", "name", "fields", "copied"] if copied else [])
        insert = dialect_insert(self.engine)
        plain = insert(deliveries).from_select(columns, members)
        try:
            added = self._insert_count(plain, hold=copied)
        except sa.exc.IntegrityError:  # another run's rows, committed while we inserted
            added = self._insert_count(plain.on_conflict_do_nothing(), hold=copied)
        if added and analyze and self.engine.dialect.name == "postgresql":
            # Fresh statistics before the send reads its pages: right after a bulk import,
            # before autovacuum gets to it, the planner takes the tables for nearly empty
            # and picks plans that read the whole list for each page.
            with self.begin() as conn:
                stale = ", ".join(["deliveries", *_stale_statistics(conn)])
                conn.exec_driver_sql(f"ANALYZE {stale}")
        return added

    def last_subscriber_id(self) -> int:
        """The highest subscriber id so far (0: none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(subscribers.c.id))).scalar() or 0)

    def _insert_count(self, statement: Any, hold: bool = False) -> int:
        """Run an enqueue's INSERT; its rowcount. hold: readers are copied into the rows,
        numbered as `recipient_changes` stands: no change may be under way then (one numbered
        before the copy but committed after the INSERT read the list would leave a stale copy
        trusted), so writers to `subscribers` and `memberships` wait for the commit (seconds
        for a million); readers do not."""
        params: dict[str, Any] = {}
        with self.begin() as conn:
            if hold:
                conn.exec_driver_sql("LOCK TABLE subscribers, memberships IN SHARE MODE")
                # Every change so far is committed and numbered below this; any to come, above.
                number = conn.exec_driver_sql("SELECT nextval('digest_recipient_change_seq')")
                params["copied"] = int(number.scalar_one())
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # A personalized issue's rows go in variant after variant, so its primary key
                # takes them out of order: with SQLite's default 2 MB of cache a million-row
                # enqueue read and wrote its index pages again and again (4.2 s, against
                # 2.8 s with 16 MB; in id order 1.6 s either way). Given back after.
                cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
                conn.exec_driver_sql(f"PRAGMA cache_size = {ENQUEUE_CACHE_KIB}")
            try:
                # SQLAlchemy keeps an INSERT's rowcount only when asked to.
                result = conn.execute(statement.execution_options(preserve_rowcount=True), params)
                return int(result.rowcount or 0)
            finally:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA cache_size = {int(cache)}")

    def withdraw_departed(
        self, issue_id: int, list_name: str, *, stored_after: int | None = None
    ) -> int:
        """Drop the pending deliveries of those no longer active members of the list
        (stored_after: see `count_deliveries`).

        They left (or bounced, or complained) after the send began or after an interrupted
        one: as if they had left before it, when `enqueue` would not have added them. Only
        `pending` rows: nothing that was ever handed to a sender.
        """
        still_member = (
            sa.select(memberships.c.subscriber_id)
            .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
            .where(
                memberships.c.subscriber_id == deliveries.c.subscriber_id,
                memberships.c.list_name == list_name,
                subscribers.c.status == "active",
            )
        )
        with self.begin() as conn:
            result = conn.execute(
                deliveries.delete().where(
                    *_of_issue(issue_id, stored_after),
                    deliveries.c.list_name == list_name,
                    deliveries.c.status == str(DeliveryStatus.PENDING),
                    ~still_member.exists(),
                )
            )
            return int(result.rowcount or 0)

    def recover_interrupted(self, issue_id: int, list_name: str) -> int:
        """Deliveries of the list left `sending` by a run that is gone: their fate is unknown.

        Gone: the lease they were claimed under is no longer live (expired, taken over, or
        given back), or they were claimed before leases. A live run's rows are never touched.
        """
        live = sa.select(1).where(
            send_leases.c.lease_id == deliveries.c.lease_id, send_leases.c.expires_at > utcnow()
        )
        worker = sa.select(1).where(  # a worker's lease (digest send --workers, digest worker)
            send_workers.c.lease_id == deliveries.c.lease_id, send_workers.c.expires_at > utcnow()
        )
        with self.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.list_name == list_name,
                    deliveries.c.status == str(DeliveryStatus.SENDING),
                    ~live.exists(),
                    ~worker.exists(),
                )
                .values(
                    status=str(DeliveryStatus.UNKNOWN),
                    updated_at=utcnow(),
                    error="interrupted while sending; the provider may or may not have it",
                )
            )
            return int(result.rowcount or 0)

    def retry_failed(self, issue_id: int, list_name: str) -> int:
        """Failures that were not the recipient's (a refused request, a configuration
        fault) back to `pending`, so that the next pass sends them."""
        with self.begin() as conn:
            result = conn.execute(
                deliveries.update()
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.list_name == list_name,
                    deliveries.c.status == str(DeliveryStatus.FAILED),
                    deliveries.c.fault == FAULT_SENDER,
                )
                .values(status=str(DeliveryStatus.PENDING), updated_at=utcnow(), error=None)
            )
            return int(result.rowcount or 0)

    def count_deliveries(
        self,
        issue_id: int,
        list_name: str,
        status: DeliveryStatus,
        *,
        stored_after: int | None = None,
    ) -> int:
        """How many deliveries of an issue to a list are in `status`.

        stored_after: SQLite, a rowid before the issue's first delivery (`first_position`):
        its rows are read where they lie from there on, not through the primary key. A
        personalized issue's rows lie variant after variant, so in key order each is a page
        read elsewhere (a million: 0.4-0.5 s against ~0.15 s).
        """
        query = (
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(
                *_of_issue(issue_id, stored_after),
                deliveries.c.list_name == list_name,
                deliveries.c.status == str(status),
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def status(self) -> list[StatusRow]:
        """Delivery counts per issue and list, newest issue first."""
        query = (
            sa.select(
                issues.c.label,
                issues.c.number,
                deliveries.c.list_name,
                deliveries.c.status,
                sa.func.count(),
            )
            .select_from(issues.join(deliveries, deliveries.c.issue_id == issues.c.id))
            .group_by(issues.c.label, issues.c.number, deliveries.c.list_name, deliveries.c.status)
        )
        rows: dict[tuple[str, int, str], dict[str, int]] = {}
        with self.engine.connect() as conn:
            for label, number, list_name, status, count in conn.execute(query):
                rows.setdefault((label, number, list_name), {})[status] = int(count)
        return [
            StatusRow(
                issue=label,
                number=number,
                list=list_name,
                sent=c.get("sent", 0),
                failed=c.get("failed", 0),
                pending=c.get("pending", 0),
                sending=c.get("sending", 0),
                unknown=c.get("unknown", 0),
                **self.engagement(label, list_name),
            )
            for (label, number, list_name), c in sorted(
                rows.items(), key=lambda kv: (-kv[0][1], kv[0][2])
            )
        ]

    def variant_counts(self, issue_id: int) -> dict[int, int]:
        """Deliveries of an issue per variant ([selection] personalize; 0: the general one)."""
        query = (
            sa.select(deliveries.c.variant, sa.func.count())
            .where(deliveries.c.issue_id == issue_id)
            .group_by(deliveries.c.variant)
        )
        with self.engine.connect() as conn:
            return {int(v): int(n) for v, n in conn.execute(query)}

    def delivery_variant(self, issue_id: int, subscriber_id: int) -> int | None:
        """The variant recorded for one subscriber's copy of an issue, if it was enqueued."""
        query = sa.select(deliveries.c.variant).where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def deliveries_of(self, issue_id: int) -> Iterator[tuple[str, str, str | None]]:
        """(email, status, message id) of every delivery of an issue."""
        query = (
            sa.select(subscribers.c.email, deliveries.c.status, deliveries.c.message_id)
            .select_from(
                deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            )
            .where(deliveries.c.issue_id == issue_id)
            .order_by(subscribers.c.email)
        )
        with self.engine.connect() as conn:
            yield from ((r[0], r[1], r[2]) for r in conn.execute(query))

    def engagement(self, label: str, list_name: str) -> dict[str, int]:
        """Provider events and unsubscribes counted for one issue and list."""
        kinds = {
            "delivered": ("delivered",),
            "opens": ("open",),
            "clicks": ("click",),
            "bounces": ("bounce", "dropped"),
            "complaints": ("spamreport",),
        }
        issue_id = sa.select(issues.c.id).where(issues.c.label == label).scalar_subquery()
        counted = (
            sa.select(events.c.event, sa.func.count())
            .where(events.c.issue_id == issue_id, events.c.list_name == list_name)
            .group_by(events.c.event)
        )
        left = (
            sa.select(sa.func.count())
            .select_from(optouts)
            .where(optouts.c.issue_id == issue_id, optouts.c.list_name == list_name)
        )
        with self.engine.connect() as conn:
            by_event = {str(kind): int(n) for kind, n in conn.execute(counted)}
            found = {key: sum(by_event.get(k, 0) for k in names) for key, names in kinds.items()}
            found["unsubscribes"] = int(conn.execute(left).scalar_one())
        return found


# PostgreSQL's own rule for when autovacuum analyzes a table (autovacuum_analyze_threshold and
# _scale_factor at their defaults): rows changed since its last ANALYZE above 50 + 10%.
_STALE = (
    "SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables t ON t.relid = c.oid "
    "WHERE c.relname IN ('subscribers', 'memberships') AND c.relnamespace = "
    "to_regnamespace(current_schema())::oid "
    "AND (c.reltuples < 0 OR t.n_mod_since_analyze > 50 + 0.1 * c.reltuples)"
)


def _stale_statistics(conn: Any) -> list[str]:
    """Of `subscribers` and `memberships`, those whose statistics autovacuum would refresh
    now (never analyzed, or changed much since): an import just before a send. Analyzing a
    million-reader list again each send was a quarter of a second before its first request."""
    return [row[0] for row in conn.exec_driver_sql(_STALE)]


def _of_issue(issue_id: int, stored_after: int | None) -> list[Any]:
    """The deliveries of an issue: by the primary key, or (SQLite, `stored_after`) by rowid
    from there on, the key kept out of the plan (`+issue_id`) so that SQLite reads the range."""
    if stored_after is None:
        return [deliveries.c.issue_id == issue_id]
    return [
        sa.literal_column("deliveries.rowid") > stored_after,
        sa.literal_column("+deliveries.issue_id") == issue_id,
    ]
