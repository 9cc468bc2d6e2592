"""Alembic's environment: runs the migrations on the connection digest hands it.

`digest db upgrade` passes its connection in `config.attributes["connection"]`; run by
Alembic's own command line, the URL comes from `-x url=…` or DIGEST_DATABASE_URL.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from digest.store.schema import metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "DIGEST_DATABASE_URL", "sqlite:///digest.db"
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
