"""A real PostgreSQL server on 127.0.0.1 for the tests of distributed search and a team's MLflow store.

Debian's `postgresql` package (`.ci/run` installs it) ships the server binaries; a throwaway cluster is made
in a temporary folder (`initdb`, trust authentication on the loopback address only) and started on a free
port. PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user the
package creates. Without the binaries the tests skip, except in CI (`CI` set), where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from launching import free_port
from needs import missing

USER = "harness"


def postgres_binaries() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<version>/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    binaries = postgres_binaries()
    if binaries is None:
        missing("PostgreSQL's server is not installed: apt-get install postgresql (as .ci/run does)")
    return binaries


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh cluster in a temporary folder, started on a free loopback port; stopped (fast) and removed on exit.

    The folder is made directly in the system's temporary folder, which the `postgres` user can reach (pytest's
    own temporary folders are private to root)."""
    binaries = require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="harness-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120)
        if done.returncode:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    run(str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start")
    try:
        yield PostgresServer(port)
    finally:
        subprocess.run([*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database; returns its SQLAlchemy URL (as Optuna and MLflow take it)."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return self.url(name)
