"""Alembic migrations of digest's database, shipped in the package.

A schema change is a new file in `versions/` (copy the newest, set `revision` and
`down_revision`, write `upgrade`), then `HEAD` in `digest/store/schema.py` names it and
`schema.py`'s tables say what it leaves. SQLite alters tables through Alembic's batch mode.
"""
