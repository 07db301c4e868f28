"""Alembic environment: migrations run on the connection :func:`upgrade` passes in."""

from __future__ import annotations

from alembic import context

from imageport.service.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through imageport.adapters.db.engine.upgrade()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
