"""A private PostgreSQL cluster on loopback, made by the tests and removed after them.

Debian's PostgreSQL 15 binaries, a cluster initialised by the `postgres` user (initdb
refuses root) in a temporary directory, its socket in that directory too, listening on
a free port of 127.0.0.1 only, with trust authentication for the `postwacht` superuser.
Each test takes a fresh database (`new_database`), so tests never see each other's
records; `sql` runs a statement as the test itself (to tamper with a trail), and `stop`
and `start` take the server away and bring it back while a store is open.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.labs.util import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postwacht"


class PostgresLab:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="postwacht-pg-", dir="/tmp"))
        self.port = free_port()
        self._databases = 0
        self.running = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "log"

    def _as_postgres(self, *args: str) -> None:
        """Run a command as the postgres user; fail the test with its output if it fails."""
        command = " ".join(shlex.quote(a) for a in args)
        result = subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", command],
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else "(no log)"
            pytest.fail(f"{command} failed ({result.returncode}): {result.stdout}"
                        f"{result.stderr}\n{log}")

    def build(self) -> None:
        if not (BIN / "initdb").exists():
            pytest.fail(f"no PostgreSQL 15 in {BIN}: install Debian's postgresql package "
                        "(`make test` does)")
        self.root.chmod(0o755)
        shutil.chown(self.root, user="postgres")
        self._as_postgres("mkdir", str(self.data), str(self.root / "sock"))
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
                          "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        options = (f"-k {self.root / 'sock'} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                          "-l", str(self.log), "-w", "start")
        self.running = True

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when the server goes down."""
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                          "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a database no test has used."""
        self._databases += 1
        name = f"records_{self._databases}"
        self.sql(self.url(), f"CREATE DATABASE {name}")
        return self.url(name)

    def sql(self, url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement as the test (committed at once); the rows it returns."""
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
            cursor = connection.execute(statement.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def cleanup(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
