"""A throwaway PostgreSQL server for the store tests: ``initdb`` + ``pg_ctl`` from Debian's
``postgresql`` package (found under /usr/lib/postgresql/<version>/bin), in a temporary folder, listening on a Unix socket only.

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user (or
``nobody``) through ``runuser``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from itertools import count
from pathlib import Path


def _pg_bin() -> Path:
    """KENSA_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin (15 on Debian 12)."""
    if os.environ.get("KENSA_PG_BIN"):
        return Path(os.environ["KENSA_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
REQUIRE = os.environ.get("KENSA_REQUIRE_POSTGRES") == "1"
USER = "kensa"


def available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


def _runner() -> tuple[list[str], str | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"], name
        except KeyError:
            continue
    raise RuntimeError("running as root with neither a 'postgres' nor a 'nobody' user")


class Cluster:
    """One PostgreSQL server; ``url(db)`` names a database on it."""

    _names = count()

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kensa-pg-"))
        self.data = self.root / "data"
        self.prefix, owner = _runner()
        if owner:
            shutil.chown(self.root, owner)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync",
                  "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(PG_BIN / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-k {self.root} -c listen_addresses='' -F -c max_connections=200",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@/{database}?host={self.root}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"kensa_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(host=str(self.root), user=USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
