"""Alembic environment for the ledger; run programmatically by `bridge.ledger.migrate`.

The caller passes an open connection in `config.attributes["connection"]` (already inside the
transaction that holds the migration lock); offline mode renders SQL for `config`'s URL.
"""

from __future__ import annotations

from alembic import context

from bridge.ledger.database import make_engine
from bridge.ledger.tables import VERSION_TABLE, metadata

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=metadata, version_table=VERSION_TABLE
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            context.configure(
                connection=conn, target_metadata=metadata, version_table=VERSION_TABLE
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
