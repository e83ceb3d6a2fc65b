"""Alembic environment: runs on the connection that ``service.store.database.upgrade`` hands
in; on PostgreSQL under an advisory lock, so servers starting together upgrade once."""

from alembic import context
from sqlalchemy import text

from service.store.tables import metadata

LOCK_KEY = 0x6B656E7361  # "kensa"


def run() -> None:
    connection = context.config.attributes["connection"]
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
