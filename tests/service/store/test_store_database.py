"""The schema: migrations from an empty database, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.store.database import current_revision, make_engine, table_names, upgrade
from service.store.tables import metadata


def test_migrations_build_the_schema_from_an_empty_database(db_url):
    eng = make_engine(db_url)
    assert current_revision(eng) is None
    upgrade(eng)
    assert current_revision(eng) == "0001"
    assert table_names(eng) == ["alembic_version", "inspections", "reviews"]
    eng.dispose()


def test_upgrade_twice_changes_nothing(engine):
    upgrade(engine)
    assert current_revision(engine) == "0001"


def test_the_migrations_match_the_tables(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # SQLite and PostgreSQL report server defaults and comments differently; tables,
    # columns and indexes must agree
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in diff}
    assert not kinds & {"add_table", "remove_table", "add_column", "remove_column",
                        "add_index", "remove_index"}, diff
