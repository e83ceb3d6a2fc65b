"""Store fixtures: every store test runs against SQLite and a real PostgreSQL server.

PostgreSQL comes from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``); where
it is absent the PostgreSQL cases skip, unless ``KENSA_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from service_helpers import TestClient

from service.app import create_app
from service.store.database import database_url as default_url
from service.store.database import make_engine, upgrade

from .postgres_cluster import REQUIRE, Cluster, available


def need_postgres() -> None:
    if available():
        return
    if REQUIRE:
        pytest.fail("PostgreSQL is required here (KENSA_REQUIRE_POSTGRES=1) but no "
                    "/usr/lib/postgresql/*/bin/initdb is installed: apt-get install postgresql")
    pytest.skip("PostgreSQL is not installed (apt-get install postgresql); the SQLite cases "
                "still ran")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    need_postgres()
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def fresh_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, for tests that stop and start the server."""
    need_postgres()
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, data_dir) -> str:
    """An empty database: an SQLite file in the test's records folder (the one
    ``make_settings`` names), or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return default_url(data_dir)
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def records_client(make_settings, db_url):
    """``records_client(**settings)``: a started app recording into ``db_url``."""
    clients = []

    def make(**overrides) -> TestClient:
        url = db_url if db_url.startswith("postgresql") else None
        client = TestClient(create_app(make_settings(database_url=url, **overrides)))
        clients.append(client.__enter__())
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
