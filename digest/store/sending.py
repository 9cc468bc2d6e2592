"""The send's hot path in SQL: pages of recipients, claims and outcomes of batches.

Plain SQL that SQLite and PostgreSQL both read, on the driver's own connection: at a million
rows the ledger's per-batch statements are the hot path, and SQLAlchemy's handling of a
statement (and of each row) cost more than the database's own work. Only the placeholder
differs between the drivers.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from digest.errors import StoreError
from digest.models import DeliveryStatus
from digest.store.base import StoreBase
from digest.store.heap import OFFSETS, position, tid
from digest.store.ledger import FAULT_RECIPIENT
from digest.store.rows import chunks, utcnow
from digest.store.schema import deliveries

T = TypeVar("T")
_CHUNK = 1000  # ids per IN (…) clause (SQLite's limit of parameters is near)

# One recipient as a page is read: id, email, name, custom fields (JSON text).
Recipient = tuple[int, str, str, str]


class Settled(Protocol):
    """What became of one claimed delivery (the delivery package's Outcome)."""

    @property
    def subscriber_id(self) -> int: ...
    @property
    def status(self) -> DeliveryStatus: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def fault(self) -> str | None: ...


# `m.subscriber_id > …` says again what `s.id > …` and the join imply: PostgreSQL does not
# carry an inequality across a join, and without it reads the list's memberships from the
# start on every page (a million-member list: a thousand pages, each slower than the last).
_PAGE = (
    "SELECT s.id, s.email, s.name, s.fields FROM subscribers s "
    "JOIN memberships m ON m.subscriber_id = s.id AND m.list_name = {p} "
    "LEFT JOIN deliveries d ON d.subscriber_id = s.id AND d.issue_id = {p} "
    "WHERE s.status = 'active' AND s.id > {p} AND m.subscriber_id > {p} "
    "AND (d.status IS NULL OR d.status IN ({states})) "
    "ORDER BY s.id LIMIT {p}"
)
# A claim looks again at the list and the subscriber: someone who left after their page was
# read (pages are read ahead) is not claimed, and stays as they were, not sent to.
_CLAIM = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = {p}, "
    "lease_id = {p} "
    "WHERE issue_id = {p} AND status IN ({states}) AND subscriber_id {ids} "
    "AND EXISTS (SELECT 1 FROM memberships m JOIN subscribers s ON s.id = m.subscriber_id "
    "WHERE m.subscriber_id = deliveries.subscriber_id AND m.list_name = deliveries.list_name "
    "AND s.status = 'active') "
    "RETURNING subscriber_id"
)
_ONE_ROW = "SELECT json_group_array(json_array(id, email, name, fields)) FROM ({page})"
# A personalized issue's page: each recipient's variant too (recorded in the ledger; NULL in a
# dry run, which records nothing) and their topic set (what decides it when not recorded).
_VARIANT_PAGE = _PAGE.replace(
    "SELECT s.id, s.email, s.name, s.fields ",
    "SELECT s.id, s.email, s.name, s.fields, d.variant AS variant, s.topics AS topics ",
)
_VARIANT_ROW = (
    "SELECT json_group_array(json_array(id, email, name, fields, variant, topics)) FROM ({page})"
)
# One recipient of a personalized issue's page: a Recipient, then variant and topic set.
VariantRecipient = tuple[int, str, str, str, int | None, str | None]
_RECORD = (
    "UPDATE deliveries SET status = {p}, message_id = {p}, error = {p}, fault = {p}, "
    "updated_at = {p} "
    "WHERE issue_id = {p} AND status = 'sending' AND subscriber_id {ids}"
)
# PostgreSQL's claim of a page in one statement (`claim_page`): the page picked by the
# primary key past the cursor, merged in id order with subscribers and memberships (ranges
# on all three, so no index lookup per row), locked, and those still active members of their
# delivery's list moved to `sending` by their rows' addresses (a TID scan of an array of
# ctids: no second lookup by key, and a plan that stays right once psycopg prepares the
# statement: a join on ctid became a sequential scan of the table in the generic plan).
# Only rows the UPDATE moved come back; the first row also says how far the page went.
_CLAIM_PAGE = (
    "WITH page AS MATERIALIZED (SELECT d.subscriber_id, d.ctid AS at, s.email, s.name, "
    "s.fields, coalesce(s.status = 'active' AND m.subscriber_id IS NOT NULL, false) AS member "
    "FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id AND s.id > %s "
    "LEFT JOIN memberships m ON m.subscriber_id = d.subscriber_id "
    "AND m.list_name = d.list_name AND m.subscriber_id > %s "
    "WHERE d.issue_id = %s AND d.list_name = %s AND d.subscriber_id > %s "
    "AND d.status IN ({states}) "
    "ORDER BY d.subscriber_id LIMIT %s FOR UPDATE OF d), "
    "taken AS (UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, "
    "updated_at = %s, lease_id = %s "
    "WHERE d.ctid = ANY(ARRAY(SELECT at FROM page WHERE member)) AND d.status IN ({states}) "
    "RETURNING d.subscriber_id), "
    "seen AS (SELECT max(subscriber_id) AS last, count(*) AS picked FROM page) "
    "SELECT seen.last, seen.picked, p.subscriber_id, p.email, p.name, p.fields FROM seen "
    "LEFT JOIN (taken JOIN page p ON p.subscriber_id = taken.subscriber_id) ON true "
    "ORDER BY p.subscriber_id"
)
# SQLite, a personalized issue (`claim_variant_run`): `enqueue` stores its deliveries variant after
# variant, so a batch of one variant is a run of rows in stored order (rowid). First the run:
# the next `size` rows in `states` past the cursor, cut before the first row of another variant
# (its variant, last rowid, rows). `+issue_id` keeps the planner on the rowid range.
_RUN_SPAN = (
    "WITH page AS (SELECT rowid AS at, variant FROM deliveries WHERE +issue_id = ? "
    "AND list_name = ? AND rowid > ? AND status IN ({states}) ORDER BY rowid LIMIT ?), "
    "head AS (SELECT variant FROM page ORDER BY at LIMIT 1), "
    "tail AS (SELECT min(page.at) AS at FROM page, head WHERE page.variant != head.variant) "
    "SELECT head.variant, max(page.at), count(*) FROM page, head, tail "
    "WHERE page.at < coalesce(tail.at, 9223372036854775807)"
)
# Then its recipients, in one row of JSON (see `_page`), each with whether they are still an
# active member of the delivery's list: the lookups a claim's EXISTS makes, made once.
_RUN_ROWS = (
    "SELECT json_group_array(json_array(at, subscriber_id, email, name, fields, member)) "
    "FROM (SELECT d.rowid AS at, d.subscriber_id, s.email, s.name, s.fields, "
    "coalesce(s.status = 'active' AND m.subscriber_id IS NOT NULL, 0) AS member "
    "FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id "
    "LEFT JOIN memberships m ON m.subscriber_id = d.subscriber_id "
    "AND m.list_name = d.list_name "
    "WHERE +d.issue_id = ? AND d.list_name = ? AND d.rowid > ? AND d.rowid <= ? "
    "AND d.status IN ({states}))"
)
# And the members among them moved to `sending`, by their rows' addresses.
# And their outcomes, by the same addresses (`recorder`'s `places`).
_RECORD_AT = (
    "UPDATE deliveries SET status = ?, message_id = ?, error = ?, fault = ?, updated_at = ? "
    "WHERE rowid IN ({ids}) AND +issue_id = ? AND status = 'sending'"
)
_CLAIM_RUN = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = ?, "
    "lease_id = ? WHERE rowid IN ({ids}) AND +issue_id = ? AND status IN ({states}) "
    "RETURNING subscriber_id"
)
# What every claim of a delivery sets besides its state: a personalized enqueue's copy of its
# reader (`deliveries.email`, `name`, `fields`, `copied`) goes, so that a sent delivery keeps
# no second copy of an address, and a row put back to pending is looked up again.
FORGET_COPY = "email = NULL, name = NULL, fields = NULL, copied = NULL"
# PostgreSQL, a personalized issue (`claim_variant_run`): the same runs where the rows lie in
# the heap (the enqueue wrote them variant after variant, and a pending row keeps its place
# until claimed), read by a TID range scan of a window of blocks past the cursor, never by an
# index a one-lineup send would pay for too. The window's candidates in heap order, cut before
# the first row of another variant than `wanted` (NULL: the first row's); each with what its
# message needs and whether they are still an active member of their delivery's list: read
# from the row's copy of its reader when it has one made after their last change (`enqueue`;
# `recipient_changes`, kept by the schema's triggers), else looked up once, for the run only
# (a run of one variant is readers spread over the whole list: each lookup a page of
# `subscribers` of its own, most of a claim's time); those moved to `sending` by address,
# their copies cleared (`FORGET_COPY`), as `_CLAIM_PAGE` does (a row another transaction moved
# meanwhile fails `ctid = ANY` on its new version: skipped, not taken twice). `since`: rows a
# deferral put back in this pass (updated since it began) wait for the next, as a
# subscriber-id cursor would have them wait. The first row says how far the run went, how
# many rows it and the window's page held, and its variant.
_HEAP_RUN = (
    "WITH page AS MATERIALIZED (SELECT d.ctid AS at, d.subscriber_id, d.variant, d.email, "
    "d.name, d.fields, d.email IS NOT NULL AND NOT EXISTS (SELECT 1 FROM recipient_changes c "
    "WHERE c.subscriber_id = d.subscriber_id AND c.seq > d.copied) AS trusted "
    "FROM deliveries d WHERE d.ctid > %s::tid AND d.ctid < %s::tid AND d.issue_id = %s "
    "AND d.list_name = %s AND d.status IN ({states}) AND d.updated_at <= %s "
    "ORDER BY d.ctid LIMIT %s), "
    "head AS (SELECT coalesce(%s::integer, (SELECT variant FROM page ORDER BY at LIMIT 1)) "
    "AS variant), "
    "cut AS (SELECT min(p.at) AS at FROM page p, head WHERE p.variant <> head.variant), "
    "run AS MATERIALIZED (SELECT p.at, p.subscriber_id, p.email, p.name, p.fields, "
    "true AS member FROM page p CROSS JOIN cut "
    "WHERE (cut.at IS NULL OR p.at < cut.at) AND p.trusted "
    "UNION ALL SELECT p.at, p.subscriber_id, s.email, s.name, s.fields, "
    "coalesce(s.status = 'active' AND m.subscriber_id IS NOT NULL, false) "
    "FROM page p CROSS JOIN cut LEFT JOIN subscribers s ON s.id = p.subscriber_id "
    "LEFT JOIN memberships m ON m.subscriber_id = p.subscriber_id AND m.list_name = %s "
    "WHERE (cut.at IS NULL OR p.at < cut.at) AND NOT p.trusted), "
    "taken AS (UPDATE deliveries d SET status = 'sending', attempts = d.attempts + 1, "
    f"updated_at = %s, lease_id = %s, {FORGET_COPY} "
    "WHERE d.ctid = ANY(ARRAY(SELECT at FROM run WHERE member)) AND d.status IN ({states}) "
    "RETURNING d.subscriber_id), "
    "seen AS (SELECT max(at)::text AS last, count(*) AS picked, "
    "(SELECT count(*) FROM page) AS paged, (SELECT variant FROM head) AS variant FROM run) "
    "SELECT seen.last, seen.picked, seen.paged, seen.variant, r.subscriber_id, r.email, "
    "r.name, r.fields FROM seen "
    "LEFT JOIN (taken JOIN run r ON r.subscriber_id = taken.subscriber_id) ON true "
    "ORDER BY r.at"
)
# The heap's blocks now: every row queued before a pass lies below them.
_HEAP_END = "SELECT pg_relation_size('deliveries') / current_setting('block_size')::integer"
# A window's blocks per row wanted: a block holds ~58 fresh deliveries (the table's fillfactor
# is 60), fewer where old rows or other issues' lie between; a window short of a run is
# followed by the next one.
_ROWS_PER_BLOCK = 50


# SQLite takes one writer at a time and makes the others poll (sleeping up to 100 ms between
# tries); workers of one run queue on this lock instead. Other processes still poll.
_SQLITE_WRITES: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_SQLITE_WRITES_LOCK = threading.Lock()


LOCKED_HINT = (
    "another process is writing to the database (another digest command, a backup, a "
    "database browser); let it finish, then run 'digest send' again: it goes on where this "
    "run stopped"
)


@contextmanager
def database_errors(engine: Any) -> Iterator[None]:
    """The driver's own errors (on the raw connections of the hot path) as StoreError: one
    line, not a traceback. A locked SQLite database has waited its busy timeout first."""
    try:
        yield
    except engine.dialect.dbapi.Error as e:
        text = " ".join(str(e).split()) or type(e).__name__
        if "locked" in text or "busy" in text:
            raise StoreError(f"the database is locked: {text}", LOCKED_HINT) from e
        raise StoreError(
            f"database error: {text}",
            "check that the database (--db / DIGEST_DATABASE_URL) is reachable, then run "
            "'digest send' again",
        ) from e


class Driver:
    """The ledger's statements on the DBAPI connections of `store`'s pool."""

    def __init__(self, store: StoreBase) -> None:
        self.engine = store.engine
        dialect = self.engine.dialect
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.sqlite = dialect.name == "sqlite"
        self._stamp: Callable[[datetime], Any] | None = None
        self.write_lock: threading.Lock | None = None
        if self.sqlite:  # SQLAlchemy keeps SQLite datetimes as text: store them the same way
            kind = deliveries.c.updated_at.type.dialect_impl(dialect)
            self._stamp = kind.bind_processor(dialect)
            with _SQLITE_WRITES_LOCK:
                self.write_lock = _SQLITE_WRITES.setdefault(self.engine, threading.Lock())

    def among(self, ids: Sequence[int]) -> str:
        """`IN (…)` of these ids as SQL, for `ids(…)`'s parameters: on PostgreSQL one array
        (`= ANY`), so the statement has few parameters and psycopg prepares it once per
        connection instead of parsing a thousand placeholders on every call."""
        if self.sqlite:
            return f"IN ({', '.join([self.mark] * len(ids))})"
        return f"= ANY({self.mark}::integer[])"

    def ids(self, ids: Sequence[int]) -> tuple[Any, ...]:
        """The parameters of `among(ids)`."""
        return tuple(ids) if self.sqlite else (list(ids),)

    def now(self) -> Any:
        """Now, as the driver should get it for a DateTime column."""
        now = utcnow()
        return self._stamp(now) if self._stamp is not None else now

    def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The rows of one query."""
        with database_errors(self.engine):
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(sql, params)
                    return list(cursor.fetchall())
                finally:
                    cursor.close()
            finally:
                raw.close()  # back to the pool, which ends the read transaction

    def write(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` in one transaction, committed before this returns."""
        with database_errors(self.engine):
            return self._write(work)

    def _write(self, work: Callable[[Any], T]) -> T:
        lock = self.write_lock
        if lock is not None:
            lock.acquire()
        try:
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    result = work(cursor)
                finally:
                    cursor.close()
                raw.commit()
                return result
            except BaseException:
                raw.rollback()
                raise
            finally:
                raw.close()
        finally:
            if lock is not None:
                lock.release()


class _Partly(Exception):
    """A claim took fewer rows than it was given (see `claim`)."""


def _states(statuses: Sequence[DeliveryStatus]) -> str:
    return ", ".join(f"'{DeliveryStatus(s).value}'" for s in statuses) or "NULL"


def next_page(
    store: StoreBase,
    issue_id: int,
    list_name: str,
    after_id: int,
    size: int,
    statuses: Sequence[DeliveryStatus],
    driver: Driver | None = None,
) -> list[Recipient]:
    """The next `size` active members of the list, by id, still to be sent `issue_id`.

    "Still to be sent" is: no delivery row yet, or one in `statuses`; so a dry run over an
    issue never sent sees everyone, without writing a row. Rows, not Subscribers: at a
    million recipients the objects cost more than the query (see `subscriber`).
    """
    return _page(
        driver or Driver(store), _PAGE, _ONE_ROW, statuses, (list_name, issue_id, after_id, size)
    )


def next_variant_page(
    store: StoreBase,
    issue_id: int,
    list_name: str,
    after_id: int,
    size: int,
    statuses: Sequence[DeliveryStatus],
    driver: Driver | None = None,
) -> list[VariantRecipient]:
    """`next_page` of a personalized issue: each row with its recorded variant (None when
    not enqueued: a dry run) and topic set."""
    args = (list_name, issue_id, after_id, size)
    return _page(driver or Driver(store), _VARIANT_PAGE, _VARIANT_ROW, statuses, args)


def _page(
    driver: Driver,
    page_sql: str,
    row_sql: str,
    statuses: Sequence[DeliveryStatus],
    args: tuple[str, int, int, int],
) -> list[Any]:
    """One page of `page_sql` (list, issue, after, size), by subscriber id."""
    list_name, issue_id, after_id, size = args
    sql = page_sql.format(p=driver.mark, states=_states(statuses))
    params = (list_name, issue_id, after_id, after_id, size)
    if not driver.sqlite:
        return driver.read(sql, params)
    # SQLite's driver lets go of the GIL for each row it steps to, and with busy workers
    # getting it back can take milliseconds: the page comes as one row of JSON instead.
    [(page,)] = driver.read(row_sql.format(page=sql), params)
    rows = [tuple(row) for row in json.loads(page)]
    rows.sort(key=lambda row: row[0])  # SQLite aggregates in the subquery's order, but does
    return rows  # not promise it (ids are unique: by id is by row)


def claim(
    store: StoreBase,
    issue_id: int,
    ids: Sequence[int],
    statuses: Sequence[DeliveryStatus],
    driver: Driver | None = None,
    lease_id: str | None = None,
) -> set[int]:
    """Move these deliveries from `statuses` to `sending` under `lease_id`, committed; the ids
    really moved."""
    driver = driver or Driver(store)
    mark, now, states = driver.mark, driver.now(), _states(statuses)

    def every(cursor: Any) -> set[int]:
        # The usual case, one step: everyone was still waiting. RETURNING costs a step (and
        # on SQLite a GIL hand-over) per row, so it is only asked for when someone was not.
        for chunk in chunks(ids, _CHUNK):
            sql = _CLAIM.format(p=mark, states=states, ids=driver.among(chunk))
            cursor.execute(
                sql.partition(" RETURNING ")[0], (now, lease_id, issue_id, *driver.ids(chunk))
            )
            if cursor.rowcount != len(chunk):
                raise _Partly  # rolled back: nothing of it was claimed
        return set(ids)

    def some(cursor: Any) -> set[int]:
        taken: set[int] = set()
        for chunk in chunks(ids, _CHUNK):
            sql = _CLAIM.format(p=mark, states=states, ids=driver.among(chunk))
            cursor.execute(sql, (now, lease_id, issue_id, *driver.ids(chunk)))
            taken.update(row[0] for row in cursor.fetchall())
        return taken

    try:
        return driver.write(every)
    except _Partly:
        return driver.write(some)


def record(
    store: StoreBase,
    issue_id: int,
    outcomes: Iterable[Settled],
    driver: Driver | None = None,
    places: dict[int, int] | None = None,
) -> None:
    """Write a batch's outcomes over its `sending` rows, committed before this returns.

    A failure keeps whose fault it was: the sender's when the outcome says so, else the
    recipient's. places: see `recorder`.
    """
    driver = driver or Driver(store)
    driver.write(recorder(driver, issue_id, outcomes, places))


def recorder(
    driver: Driver,
    issue_id: int,
    outcomes: Iterable[Settled],
    places: dict[int, int] | None = None,
) -> Callable[[Any], None]:
    """The statements of `record`, to run on a cursor (in a transaction of the caller's).

    places: SQLite rowids of claimed rows by subscriber id (`claim_variant_run`'s), taken out
    as they are used: those rows are written where they lie, not looked up by subscriber id
    (a batch of one variant's readers is spread over the whole primary key: 5.9 ms against
    1.1 ms)."""
    Key = tuple[DeliveryStatus, str | None, str | None, str | None]
    groups: dict[Key, list[int]] = {}
    placed: dict[Key, list[int]] = {}
    for o in outcomes:
        fault = (o.fault or FAULT_RECIPIENT) if o.status == DeliveryStatus.FAILED else None
        key = (o.status, o.message_id, o.error, fault)
        at = places.pop(o.subscriber_id, None) if places is not None else None
        if at is None:
            groups.setdefault(key, []).append(o.subscriber_id)
        else:
            placed.setdefault(key, []).append(at)
    mark, now = driver.mark, driver.now()

    def write(cursor: Any) -> None:
        for (status, message_id, error, fault), ids in groups.items():
            for chunk in chunks(ids, _CHUNK):
                cursor.execute(
                    _RECORD.format(p=mark, ids=driver.among(chunk)),
                    (DeliveryStatus(status).value, message_id, error, fault, now, issue_id)
                    + driver.ids(chunk),
                )
        for (status, message_id, error, fault), rowids in placed.items():
            for chunk in chunks(rowids, _CHUNK):
                cursor.execute(
                    _RECORD_AT.format(ids=", ".join(["?"] * len(chunk))),
                    (DeliveryStatus(status).value, message_id, error, fault, now, *chunk, issue_id),
                )

    return write


class PageCursor:
    """Where a pass's next claimed page starts (a subscriber id); one claim at a time reads
    and moves it, so the threads' pages never overlap and none waits for another's rows.

    While the send's deliveries are still going in a step at a time (`enqueuing`), a claim
    that finds nothing waits for the next step (`steps` counts those committed).
    """

    def __init__(self) -> None:
        self.after = 0
        self.lock = threading.Lock()
        # A PostgreSQL heap run's pass (`claim_variant_run`): `after` is a heap position, the
        # pass ends at `end` (`heap_end`), and takes rows not updated since `since`.
        self.end = 0
        self.since: Any = None
        self.enqueuing = False
        self.steps = 0
        self.more = threading.Condition()

    def stepped(self, last: bool = False) -> None:
        """A step of the enqueue is committed (the last one: `last`)."""
        with self.more:
            self.steps += 1
            self.enqueuing = self.enqueuing and not last
            self.more.notify_all()

    def wait_for_more(self, seen: int, stop: threading.Event) -> bool:
        """After a claim that found nothing, begun when `seen` steps were in: whether to
        claim again (a step came in since, or may yet come), once one did or all are in."""
        with self.more:
            while self.enqueuing and self.steps == seen and not stop.is_set():
                self.more.wait(0.2)
            return self.steps != seen


def claim_page(
    driver: Driver,
    issue_id: int,
    list_name: str,
    cursor: PageCursor,
    size: int,
    statuses: Sequence[DeliveryStatus],
    lease_id: str | None,
    done: Sequence[Settled] = (),
) -> tuple[list[Recipient], int]:
    """PostgreSQL: the outcomes `done` of this thread's last batch recorded, and the next
    `size` deliveries to `list_name` in `statuses` past `cursor` moved to `sending` under
    `lease_id`, in one transaction, committed before this returns: the recipients claimed
    (active members of the list) and how many rows the page looked at (0: nothing left).

    One commit a batch instead of three statements and two commits (a page read, a claim,
    a record): the outcomes go with the next claim, which follows their answer at once.
    """
    states = _states(statuses)
    sql = _CLAIM_PAGE.format(states=states)
    record_done = recorder(driver, issue_id, done) if done else None

    def work(db: Any) -> tuple[list[Recipient], int]:
        if record_done is not None:
            record_done(db)
        with cursor.lock:
            after = cursor.after
            db.execute(
                sql, (after, after, issue_id, list_name, after, size, driver.now(), lease_id)
            )
            found = db.fetchall()
            last, picked = found[0][0], int(found[0][1])
            if picked:
                cursor.after = max(cursor.after, int(last))
        return [(r[2], r[3], r[4], r[5]) for r in found if r[2] is not None], picked

    return driver.write(work)


def first_position(driver: Driver, issue_id: int, default: int = 0) -> int:
    """Just before the issue's first stored delivery (a `claim_variant_run` pass's start):
    its rowid on SQLite, its heap position on PostgreSQL (the rows of issues before lie
    behind it, not read again); `default` when it has none."""
    if driver.sqlite:
        [(found,)] = driver.read(
            "SELECT min(rowid) FROM deliveries WHERE issue_id = ?", (issue_id,)
        )
        return default if found is None else max(0, int(found) - 1)
    [(found,)] = driver.read(
        "SELECT min(ctid)::text FROM deliveries WHERE issue_id = %s", (issue_id,)
    )
    return default if found is None else position(found) - 1


def heap_end(driver: Driver) -> int:
    """PostgreSQL: the heap position past the deliveries' last block (a pass's `end`)."""
    [(blocks,)] = driver.read(_HEAP_END, ())
    return int(blocks) * OFFSETS


def start_heap_pass(driver: Driver, cursor: PageCursor, issue_id: int) -> None:
    """PostgreSQL: `cursor` set for a pass of `claim_variant_run`, from the issue's first row
    to the heap's end as it is now, taking the rows not updated since now."""
    cursor.end, cursor.since = heap_end(driver), driver.now()
    cursor.after = first_position(driver, issue_id, cursor.end)


def _claim_heap_run(
    driver: Driver,
    issue_id: int,
    list_name: str,
    cursor: PageCursor,
    size: int,
    statuses: Sequence[DeliveryStatus],
    lease_id: str | None,
    done: Sequence[Settled],
) -> tuple[list[Recipient], int, int]:
    """`claim_variant_run` on PostgreSQL (`_HEAP_RUN`): windows of blocks past the cursor,
    one after another, in one transaction, until the run holds `size` rows, meets another
    variant, or the pass's end."""
    sql = _HEAP_RUN.format(states=_states(statuses))
    record_done = recorder(driver, issue_id, done) if done else None
    window = max(1, -(-size // _ROWS_PER_BLOCK)) * OFFSETS

    def work(db: Any) -> tuple[list[Recipient], int, int]:
        if record_done is not None:
            record_done(db)
        taken: list[Recipient] = []
        variant: int | None = None
        picked = 0
        with cursor.lock:
            while picked < size and cursor.after < cursor.end:
                after, limit = cursor.after, size - picked
                until = min(after - after % OFFSETS + window, cursor.end)
                params = (tid(after), tid(until), issue_id, list_name, cursor.since, limit)
                params2 = (variant, list_name, driver.now(), lease_id)
                # prepare=False: planned for these bounds, never as psycopg's generic plan
                db.execute(sql, params + params2, prepare=False)
                found = db.fetchall()
                last, run, paged, head = found[0][0], int(found[0][1]), found[0][2], found[0][3]
                taken.extend((r[4], r[5], r[6], r[7]) for r in found if r[4] is not None)
                if run:
                    picked, variant = picked + run, int(head)
                    cursor.after = position(last)
                if run < paged:  # met another variant: the run ends before it
                    break
                if paged < limit:  # the window held no more: the next one
                    cursor.after = until
        return taken, variant or 0, picked

    return driver.write(work)


def claim_variant_run(
    driver: Driver,
    issue_id: int,
    list_name: str,
    cursor: PageCursor,
    size: int,
    statuses: Sequence[DeliveryStatus],
    lease_id: str | None,
    done: Sequence[Settled] = (),
    places: dict[int, int] | None = None,
) -> tuple[list[Recipient], int, int]:
    """A personalized issue: `claim_page` of a run of one variant in stored order (`cursor`
    holds a rowid on SQLite, a heap position on PostgreSQL: `_HEAP_RUN`): the outcomes `done`
    recorded, and the next run of at most `size` deliveries in `statuses`, all of one variant,
    moved to `sending` under `lease_id` in the same transaction, committed before this
    returns: the recipients claimed (active members of their delivery's list), their variant,
    and how many rows the run held (0: nothing left).
    places (SQLite): where the claimed rows lie, by subscriber id, added to (and `done`'s
    taken from).

    Against a page read by subscriber id and buffered per variant: no buffer holds anyone
    (rows wait in none, so none is claimed long before its request), the deliveries are read
    where they lie, and each recipient's membership is looked up once, not again by the claim.
    """
    if not driver.sqlite:
        return _claim_heap_run(driver, issue_id, list_name, cursor, size, statuses, lease_id, done)
    states = _states(statuses)
    record_done = recorder(driver, issue_id, done, places) if done else None

    def work(db: Any, exact: bool = True) -> tuple[list[Recipient], int, int]:
        if record_done is not None:
            record_done(db)
        with cursor.lock:
            after = cursor.after
            db.execute(_RUN_SPAN.format(states=states), (issue_id, list_name, after, size))
            variant, last, picked = db.fetchone()
            if not picked:
                return [], 0, 0
            db.execute(_RUN_ROWS.format(states=states), (issue_id, list_name, after, last))
            [(page,)] = db.fetchall()
            rows = sorted(json.loads(page))  # by rowid (see `_page`)
            members = [row for row in rows if row[5]]
            taken: set[int] = set()
            for chunk in chunks(members, _CHUNK):
                sql = _CLAIM_RUN.format(ids=", ".join(["?"] * len(chunk)), states=states)
                params = (driver.now(), lease_id, *[row[0] for row in chunk], issue_id)
                if exact:  # the usual case, without RETURNING (see `claim`)
                    db.execute(sql.partition(" RETURNING ")[0], params)
                    if db.rowcount != len(chunk):
                        raise _Partly  # rolled back: nothing of it was claimed
                    taken.update(row[1] for row in chunk)
                else:
                    db.execute(sql, params)
                    taken.update(found for (found,) in db.fetchall())
            cursor.after = max(cursor.after, int(last))
        kept = [row for row in members if row[1] in taken]
        if places is not None:
            places.update((row[1], row[0]) for row in kept)
        return [(row[1], row[2], row[3], row[4]) for row in kept], int(variant), int(picked)

    try:
        return driver.write(work)
    except _Partly:  # another process moved some of them since the run was read: ask which
        return driver.write(lambda db: work(db, exact=False))


def settle(
    store: StoreBase,
    issue_id: int,
    ids: Sequence[int],
    status: DeliveryStatus,
    error: str | None = None,
    driver: Driver | None = None,
    fault: str | None = None,
) -> None:
    """Put a whole claimed batch in one state."""
    record(store, issue_id, [_Settle(i, status, None, error, fault) for i in ids], driver)


class _Settle(NamedTuple):
    subscriber_id: int
    status: DeliveryStatus
    message_id: str | None
    error: str | None
    fault: str | None
