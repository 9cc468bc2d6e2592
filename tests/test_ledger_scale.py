"""A finished send of a big list, sent again: nothing to do, found out in proportion to the list.

Once an issue had deliveries, enqueue's `NOT IN (subquery)` outgrew PostgreSQL's work_mem and ran
as a per-row subplan: a re-run of a finished 100,000-subscriber send took over 240 s. The
statement timeout below turns such a plan into a failure instead of a hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.delivery.ledger import deliver
from digest.delivery.outbox import OutboxSender
from digest.store import Store
from tests.bulk import add_members, mark_all_sent
from tests.conftest import PG_URL, reset_postgres
from tests.test_ledger import freeze_issue, settings_for

PEOPLE = 200_000


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="PostgreSQL: set DIGEST_TEST_DATABASE_URL (see README)")
def test_rerunning_a_finished_200k_send_on_postgres_adds_and_sends_nothing(
    tmp_path: Path,
) -> None:
    reset_postgres(PG_URL)
    sep = "&" if "?" in PG_URL else "?"
    store = Store.open(f"{PG_URL}{sep}options=-c%20statement_timeout%3D30000")
    try:
        add_members(store, PEOPLE)
        issue = freeze_issue(store)
        mark_all_sent(store, issue.id)
        assert store.enqueue(issue.id, "main") == 0
        s = settings_for(backend="outbox", batch_size=1000)
        report = deliver(store, issue, "main", OutboxSender(s, tmp_path / "out"), s)
    finally:
        store.close()
    assert (report.sent, report.failed, report.unknown) == (0, 0, 0)
    assert report.already_sent == PEOPLE
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
