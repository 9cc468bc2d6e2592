"""Opening the database, transactions and the kept token secret."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from digest.errors import StoreError
from digest.store import schema
from digest.store.schema import HEAD, meta, metadata, versions

log = logging.getLogger(__name__)


class StoreBase:
    """The engine, and what every part of the store shares."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, pool_size: int | None = None) -> Self:
        """Open the database at `url`, creating the latest schema in an empty one.

        A database at another schema version is refused with how to upgrade it. pool_size:
        connections kept open (PostgreSQL), as many as the threads that use them at once.
        """
        engine = _engine(url, pool_size)
        try:
            found = schema_version(engine)
            if found is None:
                _create_latest(engine)
            elif found != HEAD:
                raise _version_error(url, found)
        except BaseException:
            engine.dispose()
            raise
        log.info("database %s at schema %s", _safe_url(url), HEAD)
        return cls(engine)

    @staticmethod
    def current(url: str) -> str | None:
        """The schema version of the database at `url`: None if it is empty, "unversioned"
        if it was made before versioned migrations."""
        engine = _engine(url)
        try:
            return schema_version(engine)
        finally:
            engine.dispose()

    @staticmethod
    def upgrade(url: str) -> tuple[str | None, str]:
        """Bring the database at `url` to the code's schema version; (before, after)."""
        engine = _engine(url)
        try:
            before = schema_version(engine)
            if before is None:
                _create_latest(engine)
            elif before != HEAD:
                if before != UNVERSIONED and before not in _revisions():
                    raise _version_error(url, before)
                _migrate(engine)
            return before, HEAD
        finally:
            engine.dispose()

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def begin(self) -> Any:
        """A transaction; committed when the block ends."""
        return self.engine.begin()

    def content_version(self) -> str:
        """A fingerprint of what an issue is made from (articles, metrics, picks, issues,
        subscribers and their lists, the secret) that changes when any of them does; one
        query of counts and latest stamps, for `digest preview --serve`'s polls."""
        t, count, top = schema, sa.func.count, sa.func.max
        facts: list[tuple[sa.Table, list[Any]]] = [
            (t.articles, [count(), top(t.articles.c.id), top(t.articles.c.updated_at)]),
            (t.article_metrics, [count(), top(t.article_metrics.c.updated_at)]),
            (t.article_origins, [count()]),
            (t.picks, [count(), top(t.picks.c.id)]),
            (t.issues, [count(), top(t.issues.c.id), count(t.issues.c.sent_at)]),
            (t.subscribers, [count(), top(t.subscribers.c.id), top(t.subscribers.c.updated_at)]),
            (t.memberships, [count(), sa.func.sum(t.memberships.c.subscriber_id)]),
            (t.optouts, [count(), top(t.optouts.c.created_at)]),
            (meta, [count()]),
        ]
        query = sa.select(
            *(
                sa.select(fact).select_from(table).scalar_subquery()
                for table, row in facts
                for fact in row
            )
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).one()
        return hashlib.sha256(repr(tuple(found)).encode("utf-8")).hexdigest()[:16]

    # ---- meta -----------------------------------------------------------------------------

    def secret(self) -> str:
        """The token secret kept in the database, made on first use.

        Two runs started together may both make one: the first written wins (ON CONFLICT
        DO NOTHING), and both read back that one.
        """
        found = self.stored_secret()
        if found is not None:
            return found
        insert = dialect_insert(self.engine)(meta).values(
            key="secret", value=secrets.token_urlsafe(32)
        )
        with self.begin() as conn:
            conn.execute(insert.on_conflict_do_nothing())
        found = self.stored_secret()
        assert found is not None
        return found

    def stored_secret(self) -> str | None:
        """The token secret kept in the database, if one was made; writes nothing."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "secret")).first()
        return None if row is None else str(row[0])


def dialect_insert(engine: Engine) -> Any:
    """The INSERT construct of `engine`'s dialect: it knows ON CONFLICT DO NOTHING."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


# Query parameters of a database URL whose values are secrets (psycopg takes ?password=).
_SECRET_PARAMETERS = ("pass", "secret", "token", "key")


def _safe_url(url: str) -> str:
    """The URL as shown to people: its password, and any password-like parameter, hidden."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return "(unparseable URL)"
    query = {k: "***" if _secret_parameter(k) else v for k, v in parsed.query.items()}
    shown = parsed.set(query=query).render_as_string(hide_password=True)
    return shown.replace("%2A%2A%2A", "***")


def _secret_parameter(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_PARAMETERS)


def _without_secrets(text: str, url: str) -> str:
    """`text` (a driver's message) with the URL and every secret in it hidden."""
    text = text.replace(url, _safe_url(url))
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return text
    secrets_in = [parsed.password] + [
        v for k, v in parsed.query.items() if _secret_parameter(k) and isinstance(v, str)
    ]
    for secret in secrets_in:
        if secret:
            text = text.replace(str(secret), "***")
    return text


def _private_sqlite_file(url: sa.URL) -> None:
    """Create a new SQLite database file readable by its owner alone (0600): it holds the
    signing secret and every address. SQLite gives its -wal and -shm files the same mode."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return  # it exists, or cannot be made: SQLite opens it, or says why not


UNVERSIONED = "unversioned"
UPGRADE_HINT = "run 'digest db upgrade' (back up digest.db first)"


def _engine(url: str, pool_size: int | None = None) -> Engine:
    """An engine for `url`, its driver and URL checked."""
    try:
        # Fewer kept connections than threads would close and reopen sessions all send long.
        sized = {"pool_size": pool_size} if pool_size and url.startswith("postgresql") else {}
        engine = sa.create_engine(url, **sized)
    except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError, ValueError) as e:
        # ValueError: a port that is no number ("invalid literal for int() …: 'abc'").
        if "int()" in str(e):
            raise StoreError(
                f"cannot use database URL {_safe_url(url)}: the port is not a number",
                "write the port in --db (or DIGEST_DATABASE_URL) as a number from 1 to 65535, "
                "e.g. postgresql+psycopg://user@host:5432/dbname",
            ) from e
        raise StoreError(
            f"cannot use database URL {_safe_url(url)}: {_without_secrets(str(e), url)}",
            "pass --db (or DIGEST_DATABASE_URL) like sqlite:///digest.db or "
            "postgresql+psycopg://user@host/dbname",
        ) from e
    if engine.dialect.name == "sqlite":
        _private_sqlite_file(engine.url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _unreachable(url: str, e: sa.exc.DBAPIError) -> StoreError:
    return StoreError(
        f"cannot open database {_safe_url(url)}: "
        f"{_without_secrets(' '.join(str(e.orig).split()), url)}",
        "check that the server runs and the URL (--db / DIGEST_DATABASE_URL) is right",
    )


def schema_version(engine: Engine) -> str | None:
    """The version recorded in the database; UNVERSIONED for digest's tables without one;
    None for a database without digest's tables."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if versions.name in tables:
                found = conn.execute(sa.select(versions.c.version_num)).scalar()
                return UNVERSIONED if found is None else str(found)
    except sa.exc.OperationalError as e:
        raise _unreachable(url, e) from e
    return UNVERSIONED if tables & set(metadata.tables) else None


def create_tables(conn: Any) -> None:
    """The tables of `schema`, with PostgreSQL's storage settings."""
    metadata.create_all(conn)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"ALTER TABLE deliveries SET (fillfactor = {schema.DELIVERIES_FILLFACTOR})"
        )
        for statement in schema.RECIPIENT_COPY_TRIGGERS:
            conn.exec_driver_sql(statement)


def _create_latest(engine: Engine) -> None:
    """The latest schema in an empty database, recorded as HEAD, in one transaction."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two first opens at once: one creates
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242001)")
        if versions.name in sa.inspect(conn).get_table_names():
            return
        create_tables(conn)
        versions.create(conn)
        conn.execute(versions.insert().values(version_num=HEAD))


def _alembic_config() -> Any:
    from alembic.config import Config  # only when migrating: Alembic is slow to import

    config = Config()
    config.set_main_option("script_location", "digest.store:migrations")
    return config


def _revisions() -> list[str]:
    """Every revision the code knows, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _migrate(engine: Engine) -> None:
    from alembic import command

    config = _alembic_config()
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Batch mode makes a table again (drop, then rename a copy): with foreign keys
            # enforced, dropping a table others point at fails. Only outside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _version_error(url: str, found: str) -> StoreError:
    """Why a database at another version is refused, and what to do."""
    where = _safe_url(url)
    if found == UNVERSIONED or found in _revisions():
        shown = "no version (made before versioned migrations)" if found == UNVERSIONED else found
        return StoreError(
            f"database {where} is at schema version {shown}; this digest needs {HEAD}",
            UPGRADE_HINT,
        )
    return StoreError(
        f"database {where} is at schema version {found}, newer than this digest's {HEAD}",
        "upgrade digest (python3 -m pip install -U digest), or use a backup made by this version",
    )


def database_problem(error: BaseException) -> str | None:
    """The first line of what the database said, if `error` is a database error; else None."""
    import sys

    # A driver's own error too (raised by its cursor in a bulk path, not through SQLAlchemy).
    drivers = tuple(
        module.Error for module in (sys.modules.get(n) for n in ("sqlite3", "psycopg")) if module
    )
    if not isinstance(error, (sa.exc.SQLAlchemyError, *drivers)):
        return None
    return " ".join(f"{getattr(error, 'orig', None) or error}".split())
