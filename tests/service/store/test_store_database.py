"""The schema: migrations from an empty database, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.store.database import current_revision, make_engine, table_names, upgrade
from service.store.tables import metadata

HEAD = "0005"


def test_migrations_build_the_schema_from_an_empty_database(db_url):
    eng = make_engine(db_url)
    assert current_revision(eng) is None
    upgrade(eng)
    assert current_revision(eng) == HEAD
    assert table_names(eng) == ["alembic_version", "inspections", "label_imports", "labels",
                                "outbox", "reviews", "sink_positions"]
    eng.dispose()


def test_a_database_at_0001_upgrades_and_keeps_its_records(db_url):
    from service.store.records import Records

    from .store_helpers import engine_at, row

    eng = engine_at(db_url, "0001")
    kept = row()
    Records(eng).add([kept])
    upgrade(eng)
    assert current_revision(eng) == HEAD
    assert Records(eng).get(kept["id"])["id"] == kept["id"]
    eng.dispose()


def test_upgrade_twice_changes_nothing(engine):
    upgrade(engine)
    assert current_revision(engine) == HEAD


def test_the_migrations_match_the_tables(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # SQLite and PostgreSQL report server defaults and comments differently; tables,
    # columns and indexes must agree
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in diff}
    assert not kinds & {"add_table", "remove_table", "add_column", "remove_column",
                        "add_index", "remove_index"}, diff


def test_kensa_db_upgrade_brings_the_schema_up_to_date(db_url, data_dir, capsys):
    from service.cli import main

    args = ["--database-url", db_url] if db_url.startswith("postgresql") else [
        "--data-dir", str(data_dir)]
    assert main(["db", "upgrade", *args]) == 0
    assert main(["db", "upgrade", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(f"is at revision {HEAD}")
    eng = make_engine(db_url)
    assert current_revision(eng) == HEAD
    eng.dispose()


def test_kensa_db_upgrade_names_an_unreachable_database(tmp_path, capsys):
    from service.cli import main

    url = f"postgresql+psycopg://kensa@/none?host={tmp_path}"
    assert main(["db", "upgrade", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kensa db: error: cannot upgrade postgresql+psycopg://kensa@/none")
    assert "connection" in err
