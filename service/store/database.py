"""Engines for the records database and bringing its schema up to date (Alembic).

``KENSA_DATABASE_URL`` names a server (``postgresql+psycopg://user:pw@host/db``); unset, the
records live in ``KENSA_DATA_DIR/kensa.db``, an SQLite file in WAL mode (readers never wait
for the writer; ``synchronous=NORMAL``: a committed batch survives a killed process, the
last batches may not survive a power cut).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_FILE = "kensa.db"

log = logging.getLogger("kensa.store")
# alembic announces each of its plugins at INFO when it is imported
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def database_url(data_dir: Path, url: str | None = None) -> str:
    """The URL in use: ``url`` when given, else the SQLite file in ``data_dir``."""
    if url:
        return url
    return f"sqlite:///{Path(data_dir).resolve() / SQLITE_FILE}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, NORMAL sync and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                         connect_args={"connect_timeout": 5} if "psycopg" in url else {})


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Brings the schema to the newest migration (a no-op when it is there already).

    Several servers may start at once against one PostgreSQL: the migration holds an
    advisory lock (see ``migrations/env.py``), so one upgrades and the others wait.
    """
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
