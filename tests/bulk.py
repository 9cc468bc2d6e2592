"""Big lists made with set-based SQL: 200,000 subscribers in a second or two, not a CSV import."""

from __future__ import annotations

from digest.store import Store

_NUMBERS = {
    "postgresql": "SELECT i FROM generate_series(1, {n}) AS g(i)",
    "sqlite": (
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) "
        "SELECT i FROM g"
    ),
}


def add_members(store: Store, count: int, list_name: str = "main") -> None:
    """`count` active subscribers reader{i}@example.com (ids 1..count) on `list_name`."""
    numbers = _NUMBERS[store.engine.dialect.name].format(n=int(count))
    with store.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscribers (id, email, email_key, name, status, fields, created_at, "
            "updated_at) SELECT i, 'reader' || i || '@example.com', "
            "'reader' || i || '@example.com', 'Reader ' || i, 'active', '{{}}', "
            f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM ({numbers}) AS g"
        )
        conn.exec_driver_sql(
            "INSERT INTO memberships (subscriber_id, list_name) "
            f"SELECT i, '{list_name}' FROM ({numbers}) AS g"
        )
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), "
                "(SELECT MAX(id) FROM subscribers))"
            )


def mark_all_sent(store: Store, issue_id: int, list_name: str = "main") -> None:
    """Every member of `list_name` has a `sent` delivery of the issue: a finished send, with
    its rows written as a send writes them (queued, statistics taken, claimed, recorded), so
    the table carries the dead row versions autovacuum has not yet cleared."""
    with store.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO deliveries (issue_id, subscriber_id, list_name, status, attempts, "
            f"updated_at) SELECT {int(issue_id)}, subscriber_id, list_name, 'pending', 0, "
            f"CURRENT_TIMESTAMP FROM memberships WHERE list_name = '{list_name}'"
        )
    if store.engine.dialect.name == "postgresql":
        with store.begin() as conn:
            conn.exec_driver_sql("ANALYZE subscribers, memberships, deliveries")
    for status in ("sending", "sent"):
        with store.begin() as conn:
            conn.exec_driver_sql(
                f"UPDATE deliveries SET status = '{status}' WHERE issue_id = {int(issue_id)}"
            )
