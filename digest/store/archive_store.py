"""The public side of issues: which ones readers may see, and the id a draft will get."""

from __future__ import annotations

import sqlalchemy as sa

from digest.models import DeliveryStatus, Issue
from digest.store.base import StoreBase
from digest.store.issue_store import with_variants_of
from digest.store.rows import _issue
from digest.store.schema import deliveries, issues

# Ids are 32-bit integers in the tables: a larger one names no issue (and PostgreSQL refuses it).
MAX_ID = 2**31 - 1


def _public() -> sa.ColumnElement[bool]:
    """An issue is public once anything of it was delivered, failures or not."""
    delivered = (
        sa.select(deliveries.c.issue_id)
        .where(deliveries.c.issue_id == issues.c.id, deliveries.c.status == DeliveryStatus.SENT)
        .exists()
    )
    return sa.or_(issues.c.sent_at.is_not(None), delivered)


class ArchiveStore(StoreBase):
    """Issues as the archive, web views and feed show them."""

    def public_issues(self) -> list[Issue]:
        """Every issue that went out to anyone, newest first."""
        when = sa.func.coalesce(issues.c.sent_at, issues.c.created_at)
        query = sa.select(issues).where(_public()).order_by(when.desc(), issues.c.id.desc())
        with self.engine.connect() as conn:
            return [_issue(row) for row in conn.execute(query)]

    def public_issue(self, issue_id: int, *, with_variants: bool = False) -> Issue | None:
        """One issue that went out to anyone, or None (drafts and unknown ids are not public);
        `with_variants`: its personalized lineups too."""
        if not 0 < issue_id <= MAX_ID:
            return None
        query = sa.select(issues).where(issues.c.id == issue_id, _public())
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            return with_variants_of(conn, _issue(row)) if with_variants else _issue(row)

    def next_issue_id(self) -> int:
        """The id the next frozen issue will get (a draft's links point there)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                sequence = "pg_get_serial_sequence('issues', 'id')::regclass"
                last = conn.exec_driver_sql(f"SELECT pg_sequence_last_value({sequence})").scalar()
            else:  # an INTEGER PRIMARY KEY: SQLite gives the largest id plus one
                last = conn.execute(sa.select(sa.func.max(issues.c.id))).scalar()
        return int(last or 0) + 1
