"""Inspection records: one row per inspected image, its review, and the kept image.

The store lives in a database: an SQLite file (WAL) under ``KENSA_DATA_DIR`` by default, or the
PostgreSQL server that ``KENSA_DATABASE_URL`` names, so several servers share one history.
Kept images lie under ``KENSA_DATA_DIR/images``, named by their SHA-256 (same bytes once).

* :mod:`.tables`     the schema (SQLAlchemy Core); changed only through :mod:`.migrations`
* :mod:`.database`   engines for SQLite and PostgreSQL, and ``upgrade`` (Alembic)
* :mod:`.records`    writing, reading, filtering, reviewing and counting records
* :mod:`.images`     the content-addressed image folder
* :mod:`.journal`    the append-only file that holds records while the database is away
* :mod:`.recorder`   the writer thread: one transaction per batch, journal on failure
* :mod:`.retention`  pruning old images and records
* :mod:`.outbox`     what the sinks (webhook, MQTT) still have to deliver, in order
"""
