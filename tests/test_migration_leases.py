"""Migration 0003 on a database with history: rows claimed before leases, failures before kinds."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from digest.cli import cli
from digest.store import Store, deliveries
from tests.conftest import init_folder
from tests.test_migrations import load_landed


def test_rows_from_before_leases_are_a_dead_runs_and_old_failures_the_recipients(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path, monkeypatch, db_url)
    load_landed(db_url, tmp_path)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # a run of the old release was killed mid-batch, one failed
        ids = [r[0] for r in conn.exec_driver_sql("SELECT subscriber_id FROM deliveries")]
        conn.exec_driver_sql(
            f"UPDATE deliveries SET status = 'sending' WHERE subscriber_id = {ids[0]}"
        )
        conn.exec_driver_sql(
            f"UPDATE deliveries SET status = 'failed' WHERE subscriber_id = {ids[1]}"
        )
    engine.dispose()
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0

    store = Store.open(db_url)
    try:
        with store.engine.connect() as conn:
            kept = {
                r.subscriber_id: (r.status, r.lease_id, r.fault)
                for r in conn.execute(sa.select(deliveries))
            }
    finally:
        store.close()
    assert kept[ids[0]] == ("sending", None, None)
    assert kept[ids[1]] == ("failed", None, None)

    again = runner.invoke(
        cli, ["send", "--yes", "--no-ingest", "--week", "2026-W48", "--retry-failed"]
    )
    assert "1 deliveries were interrupted by an earlier run" in again.output, again.output
    assert "earlier failures retried" not in again.output  # no kind: the recipient's
    status = runner.invoke(cli, ["status"]).output
    assert status.startswith("#1 2026-W48 [main]: 1 sent, 1 failed, 0 pending, 1 unknown")
