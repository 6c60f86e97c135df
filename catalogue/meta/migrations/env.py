"""Alembic's environment for the catalogue: run on the connection ``catalogue.meta.db`` hands over.

The hub migrates through alembic's programmatic API (no alembic.ini): ``db.upgrade_schema``
puts an open connection in ``config.attributes["connection"]``. Offline (SQL script) mode is
not used.
"""

from __future__ import annotations

from alembic import context

from catalogue.meta.db import declared
from catalogue.meta.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("catalogue migrations run through catalogue.meta.db.upgrade_schema (or `urbandata db upgrade`)")

# render_as_batch: SQLite can only alter a table by copying it, which batch mode does for us.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, include_object=declared)
with context.begin_transaction():
    context.run_migrations()
